// Command ferretdb runs FerretDB v1 with its embedded SQLite backend as the
// lab's MongoDB-compatible database: no MongoDB server is packaged by any
// registry this lab can reach, and the official `mongo` image cannot be pulled.
//
// It wraps the embeddable package rather than FerretDB's own cmd/ferretdb,
// because that command panics unless built inside FerretDB's git checkout
// (its version file is generated from git).
//
// Configuration: flags, each with an environment variable as its default
// (same names as upstream FerretDB, so a compose file reads familiar).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", env("FERRETDB_LISTEN_ADDR", "0.0.0.0:27017"),
		"TCP address for the MongoDB wire protocol (env FERRETDB_LISTEN_ADDR)")
	// A directory, with the trailing slash FerretDB insists on; one SQLite
	// file per database is created in it. It must already exist.
	sqliteURL := flag.String("sqlite-url", env("FERRETDB_SQLITE_URL", "file:/data/db/"),
		"SQLite URI of the data directory (env FERRETDB_SQLITE_URL)")
	logLevel := flag.String("log-level", env("FERRETDB_LOG_LEVEL", "info"),
		"debug, info, warn or error (env FERRETDB_LOG_LEVEL)")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: bad -log-level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}

	// stderr, so `docker logs` shows it and stdout stays free.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// Telemetry: the embeddable package never starts FerretDB's telemetry
	// reporter (only cmd/ferretdb does) and New() additionally disables and
	// locks it in the state it creates; that state lives in memory only (no
	// state file), so nothing can re-enable it. No other code path in this
	// configuration makes an outbound connection: the lab may only talk to
	// package registries, loopback and its own containers.
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: *sqliteURL,
	})
	if err != nil {
		logger.Error("cannot start", "error", err)
		os.Exit(1)
	}

	// Docker stops a container with SIGTERM; Ctrl-C sends SIGINT. Either one
	// cancels the context, Run closes the listener and the SQLite files, and
	// the process exits 0 so a normal stop is not reported as a failure.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logger.Info("listening", "addr", *listen, "sqlite", *sqliteURL)

	if err := f.Run(ctx); err != nil {
		logger.Error("stopped with an error", "error", err)
		os.Exit(1)
	}

	logger.Info("stopped")
}

// env returns the environment variable key, or def when it is unset or empty.
func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
