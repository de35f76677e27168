#!/bin/bash
# The image's HEALTHCHECK: GET /health from the capwatch server in this container and succeed
# on 200. The slim runtime image has no curl; bash's /dev/tcp does the request, so the check
# adds nothing to the image. Port: CAPWATCH_HEALTH_PORT (default 8000, the image's CMD).
# Prints the status line and the JSON body (the engine keeps it in the container's health log).
set -u
port="${CAPWATCH_HEALTH_PORT:-8000}"
exec 3<>"/dev/tcp/127.0.0.1/${port}" || { echo "no server on 127.0.0.1:${port}"; exit 1; }
printf 'GET /health HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nUser-Agent: capwatch-healthcheck\r\nConnection: close\r\n\r\n' "$port" >&3
response="$(timeout 4 cat <&3)"
exec 3<&-
status_line="${response%%$'\r'*}"
body="${response#*$'\r\n\r\n'}"
printf '%s %s\n' "$status_line" "${body:0:1000}"
case "$status_line" in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *) exit 1 ;;
esac
