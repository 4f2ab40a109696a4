# books-lab/nginx: the lab's stand-in for the public nginx image, which
# cannot be pulled here. lab/up.sh builds it (build_proxy_image) FROM the
# lab's Debian image, with this file alone as the context, and mirrors it
# into the lab's registry for prod.
#
# Like the official image where it matters to the harness: nginx.conf
# includes /etc/nginx/conf.d/*.conf (Debian's does; the harness puts its
# configuration there before the container starts), the logs go to the
# container's stdout and stderr, `docker stop` quits gracefully (SIGQUIT),
# SIGHUP reloads the configuration, and nginx runs in the foreground.
# Debian's ways otherwise: the master runs as root, the workers as www-data,
# and with conf.d empty there is no server at all (the package's default
# site is removed).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

# Debian's `nginx` package (bookworm's nginx-light is the same binary plus
# the echo module). policy-rc.d keeps the package's postinst from starting
# nginx inside the build. The base image has no docker-clean hook, so the
# downloaded .debs are removed here. `nginx -t` checks the result.
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \
 && chmod 755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
 && rm -f /etc/nginx/sites-enabled/default \
 && mkdir -p /etc/nginx/conf.d \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log \
 && grep -q '^[[:space:]]*include /etc/nginx/conf.d/\*\.conf;' /etc/nginx/nginx.conf \
 && nginx -t

# Documentation only: where the harness's configuration listens.
EXPOSE 8080

STOPSIGNAL SIGQUIT

CMD ["nginx", "-g", "daemon off;"]
