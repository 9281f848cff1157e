# lunet's HTTP model server (examples/serve.lua) as a container image.
#
#   docker build -t lunet-serve .
#   docker run --rm -p 8000:8000 -v "$PWD/models:/models:ro" lunet-serve
#
# The model repository is /models, laid out as <name>/<version>/model.safetensors (see the
# README's "Serving over HTTP"); mount it read-only as above, or bake the models into an image
# of your own with two lines:
#
#   FROM lunet-serve
#   COPY models /models
#
# Flags after the image name replace CMD below (examples/serve.lua lists them); the environment
# works too (LUNET_MODELS, LUNET_PORT, LUNET_THREADS, LUNET_HOST), but flags win over it.  The
# HEALTHCHECK asks port 8000: if you serve on another port, pass --health-cmd as well.
# `docker stop` sends SIGTERM and waits 10 s by default; the server drains for --drain-delay-ms
# (5 s) and then up to --shutdown-timeout-ms (25 s), so give it `docker stop -t 35` (Kubernetes:
# deploy/kubernetes/README.md).
#
# No Docker engine ran this file where it was written; bench/dockerfile_steps.sh runs its steps
# as plain commands in bookworm roots made by debootstrap (see that script).

# ---- build: compile lunet/core.so ----------------------------------------------------------------
FROM debian:bookworm-slim AS build

# What `make all` needs and no more (the Makefile's DEB_PACKAGES also lists the test tools).
# libc6-dev is only a Recommends of gcc, which --no-install-recommends skips.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev make pkg-config liblua5.4-dev libopenblas-dev libdnnl-dev libuv1-dev \
      libhttp-parser-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY Makefile ./
COPY core core
COPY bindings bindings
COPY lua lua
RUN make -j"$(nproc)" all

# ---- the image: the runtime libraries, the module, the Lua files, serve.lua -----------------------
FROM debian:bookworm-slim

# The libraries lunet/core.so links (ldd: OpenBLAS, oneDNN (Debian 12 calls its runtime
# libdnnl2), libuv, http-parser, libgomp, zlib), the Lua modules lua/lunet requires (cjson,
# lfs), and lua-socket for the HEALTHCHECK below.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      lua5.4 lua-cjson lua-filesystem lua-socket libopenblas0-pthread libdnnl2 libuv1 \
      libhttp-parser2.9 libgomp1 zlib1g \
 && rm -rf /var/lib/apt/lists/*

# A numeric user, so that Kubernetes' runAsNonRoot can verify it; it owns nothing in the image.
RUN groupadd --system --gid 10001 lunet \
 && useradd --system --uid 10001 --gid lunet --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin lunet \
 && mkdir /models

WORKDIR /app
COPY --from=build /src/lunet/core.so lunet/core.so
COPY --from=build /src/lua/lunet lua/lunet
COPY examples/serve.lua examples/serve.lua

USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
# Ready, not merely alive: 503 while the server drains after SIGTERM.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["lua5.4", "-e", "local http = require('socket.http'); http.TIMEOUT = 2; local _, code = http.request('http://127.0.0.1:8000/v2/health/ready'); os.exit(code == 200 and 0 or 1)"]
ENTRYPOINT ["lua5.4", "examples/serve.lua"]
CMD ["--models", "/models", "--port", "8000", "--drain-delay-ms", "5000", "--shutdown-timeout-ms", "25000"]
