//! `books-bench`: the baseline that `scripts/bench.sh` sets beside books-ms,
//! and the steady load of `scripts/bench-deploy.sh`.
//!
//! It does, directly with the `mongodb` driver, what the service does for
//! one HTTP request, so the difference between the two is what HTTP, actix
//! and the service's own code cost. Layout: `load.rs` (the three operations
//! and the timed run), `probe.rs` (readiness polling and a free port for the
//! script), `steady.rs` (a steady stream of HTTP requests while a deploy
//! runs: failures, the longest gap, the revisions seen), `db_faults.rs`
//! (PUT load while the database container is SIGKILLed, and a list cut
//! short, for `scripts/reliability-db.sh`). Results go to stdout, progress
//! and errors to stderr.
//!
//! Exit codes: 0 success, 1 failure (the database did not answer, a
//! readiness wait timed out, or some operations failed), 2 usage error.
//! `steady` reports its failed requests in its JSON and exits 0: they are
//! the measurement; `db-faults` exits 1 when a write was lost, a 500
//! answered or the cut list looked complete.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

mod db_faults;
mod load;
mod probe;
mod steady;

#[derive(Parser)]
#[command(name = "books-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Loads one collection with one operation from N concurrent tasks for D seconds.
    Run {
        /// The database, e.g. mongodb://127.0.0.1:27017
        #[arg(long)]
        uri: String,
        #[arg(long)]
        db: String,
        #[arg(long, default_value = "books")]
        collection: String,
        #[arg(long, value_enum)]
        op: Operation,
        /// Books in the collection, with `_id`s 1..=N: GET and PUT cycle
        /// through them, and each list must return exactly N.
        #[arg(long)]
        books: u32,
        /// Concurrent tasks, each with one operation in flight (like HTTP connections).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, default_value_t = 10.0)]
        duration_s: f64,
        /// Load that is run first and not measured (connections, caches).
        #[arg(long, default_value_t = 1.0)]
        warmup_s: f64,
        /// One line `ops_per_s p50_ms p99_ms errors ops p999_ms` for scripts.
        #[arg(long)]
        tsv: bool,
        /// The list's cursor batch size (default: the service's).
        #[arg(long, default_value_t = load::LIST_BATCH_SIZE, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        list_batch_size: u32,
    },
    /// Empties the collection and writes books 1..=N with the driver (the
    /// books the load expects), for collections too large to seed through the API.
    Seed {
        /// The database, e.g. mongodb://127.0.0.1:27017
        #[arg(long)]
        uri: String,
        #[arg(long)]
        db: String,
        #[arg(long, default_value = "books")]
        collection: String,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        books: u32,
    },
    /// Polls http://ADDR/ready until it answers 200; prints how long it took.
    WaitReady {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "/ready")]
        path: String,
        #[arg(long, default_value_t = 5)]
        interval_ms: u64,
        #[arg(long, default_value_t = 10.0)]
        timeout_s: f64,
    },
    /// Prints a loopback TCP port that is free now.
    FreePort,
    /// PUTs new books over several connections while the database container
    /// is SIGKILLed and started again; reads every acknowledged one back;
    /// prints one line of JSON (sent, acknowledged, lost, 500s, the longest
    /// 503 window, the time to recover). Exits 1 when a write was lost or a
    /// 500 answered.
    DbFaults {
        /// The service, e.g. http://127.0.0.1:8080
        #[arg(long)]
        url: String,
        /// The database, for pings: mongodb://127.0.0.1:PORT
        #[arg(long)]
        db_uri: String,
        /// The database container's name (killed and started with the docker CLI).
        #[arg(long)]
        container: String,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 3)]
        kills: usize,
        /// Load before each kill and after the last one.
        #[arg(long, default_value_t = 3.0)]
        up_s: f64,
        /// How long the database stays down each time.
        #[arg(long, default_value_t = 3.0)]
        down_s: f64,
        /// All connections together.
        #[arg(long, default_value_t = 20_000)]
        max_requests: u64,
        /// The service's database name: with it, a last phase cuts a list
        /// short (books written with the driver, the database killed under a
        /// slow list) and reports what the client got.
        #[arg(long)]
        list_cut_db: Option<String>,
        #[arg(long, default_value_t = 30_000)]
        list_cut_books: u32,
    },
    /// Requests URL steadily until SIGTERM/SIGINT, --max-seconds or
    /// --max-requests; prints one line of JSON: requests, failed,
    /// longest_gap_ms, first_revision, last_revision (from /version's JSON).
    Steady {
        /// e.g. http://10.200.0.2:8080/version
        #[arg(long)]
        url: String,
        /// Clients, each with one keep-alive connection and one request in flight.
        #[arg(long, default_value_t = 2)]
        connections: usize,
        /// Each client's pause between an answer and its next request.
        #[arg(long, default_value_t = 5)]
        pause_ms: u64,
        #[arg(long, default_value_t = 300.0)]
        max_seconds: f64,
        /// All clients together.
        #[arg(long, default_value_t = 1_000_000)]
        max_requests: u64,
    },
}

/// The service's three database operations under load.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Operation {
    /// `GET /api/v1/books/_id/{id}`: find_one by integer `_id`.
    Get,
    /// `GET /api/v1/books`: every summary, sorted by `_id`, streamed.
    List,
    /// `PUT /api/v1/books`: replace_one upsert, journaled, majority.
    Put,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("books-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { uri, db, collection, op, books, concurrency, duration_s, warmup_s, tsv, list_batch_size } => {
            anyhow::ensure!(books > 0 && concurrency > 0, "--books and --concurrency must be at least 1");
            let plan = load::Plan {
                op,
                books,
                concurrency,
                duration: secs("--duration-s", duration_s)?,
                warmup: secs("--warmup-s", warmup_s)?,
                list_batch_size,
            };
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let report = runtime.block_on(async {
                let (client, books) = load::connect(&uri, &db, &collection).await?;
                let report = load::run(&books, &plan).await;
                drop(books);
                // Close the connections while the runtime is still there: its
                // drop under the driver's background tasks can make them panic.
                let _ = tokio::time::timeout(Duration::from_secs(5), client.shutdown()).await;
                report
            })?;
            if tsv {
                println!(
                    "{:.1}\t{:.3}\t{:.3}\t{}\t{}\t{:.3}",
                    report.ops_per_s(),
                    report.p50_ms(),
                    report.p99_ms(),
                    report.errors,
                    report.ops(),
                    report.p999_ms()
                );
            } else {
                println!(
                    "{op:?} x{concurrency}, {:.1} s: {} ops, {:.1} ops/s, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, \
                     {} errors",
                    report.window.as_secs_f64(),
                    report.ops(),
                    report.ops_per_s(),
                    report.p50_ms(),
                    report.p99_ms(),
                    report.p999_ms(),
                    report.errors
                );
            }
            Ok(if report.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Seed { uri, db, collection, books } => {
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(async {
                let (client, collection) = load::connect(&uri, &db, &collection).await?;
                let seeded = load::seed(&collection, books).await;
                drop(collection);
                let _ = tokio::time::timeout(Duration::from_secs(5), client.shutdown()).await;
                seeded
            })?;
            println!("{books}");
            Ok(ExitCode::SUCCESS)
        }
        Command::WaitReady { addr, path, interval_ms, timeout_s } => {
            let elapsed =
                probe::wait_ready(addr, &path, Duration::from_millis(interval_ms), secs("--timeout-s", timeout_s)?)?;
            println!("{:.1}", elapsed.as_secs_f64() * 1000.0);
            Ok(ExitCode::SUCCESS)
        }
        Command::FreePort => {
            println!("{}", probe::free_port()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::DbFaults {
            url,
            db_uri,
            container,
            connections,
            kills,
            up_s,
            down_s,
            max_requests,
            list_cut_db,
            list_cut_books,
        } => {
            anyhow::ensure!((1..=200_000).contains(&list_cut_books), "--list-cut-books: from 1 to 200000");
            anyhow::ensure!((1..=64).contains(&connections), "--connections: from 1 to 64");
            anyhow::ensure!(kills <= 20, "--kills: at most 20");
            anyhow::ensure!(max_requests >= connections as u64, "--max-requests: at least one per connection");
            let plan = db_faults::Plan {
                url: url.trim_end_matches('/').to_owned(),
                db_uri,
                container,
                connections,
                kills,
                up: secs("--up-s", up_s)?,
                down: secs("--down-s", down_s)?,
                max_requests,
                list_cut: list_cut_db.map(|db| (db, list_cut_books)),
            };
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let report = runtime.block_on(db_faults::run(plan))?;
            println!("{}", serde_json::to_string(&report)?);
            let list_ok = report.list_cut.as_ref().is_none_or(|cut| cut.transfer_broken && !cut.complete_json);
            let ok = report.writes_lost == 0 && report.answers_500 == 0 && list_ok;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Steady { url, connections, pause_ms, max_seconds, max_requests } => {
            anyhow::ensure!(connections > 0, "--connections must be at least 1");
            anyhow::ensure!(pause_ms <= 60_000, "--pause-ms: at most 60000");
            let plan = steady::Plan {
                url,
                connections,
                pause: Duration::from_millis(pause_ms),
                max_duration: secs("--max-seconds", max_seconds)?,
                max_requests,
            };
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let report = runtime.block_on(steady::run(plan))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn secs(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| *d <= Duration::from_secs(3600))
        .with_context(|| format!("{flag}: `{value}` is not a number of seconds from 0 to 3600"))
}
