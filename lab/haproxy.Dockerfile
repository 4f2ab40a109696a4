# books-lab/haproxy: the lab's stand-in for the public haproxy image, which
# cannot be pulled here. lab/up.sh builds it (build_proxy_image) FROM the
# lab's Debian image, with this file alone as the context, and mirrors it
# into the lab's registry for prod.
#
# Like the official image where it matters to the harness: the configuration
# is /etc/haproxy/haproxy.cfg (the harness uploads its own, and its maps,
# into /etc/haproxy before the container starts), HAProxy runs in the
# foreground in master-worker mode (-W -db), `docker stop` stops it
# gracefully (SIGUSR1: the listeners close, the connections finish, within
# the configuration's hard-stop-after), and SIGUSR2 to the master reloads.
# Logs: the configuration says `log stdout ...` to have them on the
# container's stdout (there is no syslog socket in the container).
# /run/haproxy holds the runtime API's socket (`stats socket
# /run/haproxy/admin.sock`); socat talks to it:
#   docker exec PROXY sh -c 'echo "$1" | socat -t 2 stdio unix-connect:/run/haproxy/admin.sock' sh 'show servers state'
# Debian's ways otherwise: Debian's default haproxy.cfg is left in place (it
# runs, with no listener), and HAProxy runs as root unless a configuration
# says `user`.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

# Debian's `haproxy` (2.6 in bookworm) and `socat` for the runtime API.
# policy-rc.d keeps the package's postinst from starting HAProxy inside the
# build. The base image has no docker-clean hook, so the downloaded .debs
# are removed here. /run/haproxy is made by systemd or the init script on a
# Debian host, by nothing here. `haproxy -c` checks the result.
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \
 && chmod 755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy socat \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
 && mkdir -p /run/haproxy /etc/haproxy \
 && haproxy -c -f /etc/haproxy/haproxy.cfg

# Documentation only: where the harness's configuration listens.
EXPOSE 8080

STOPSIGNAL SIGUSR1

CMD ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
