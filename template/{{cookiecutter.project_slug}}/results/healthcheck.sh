#!/bin/sh
# Alive = the server answers on its private socket (a tmpfs of this container only). Nobody is logged in there and
# the default user is off, so the answer is a refusal (NOAUTH); PONG would mean the default user is on, which the
# security suite reports (RES-02), not the healthcheck. No answer, or any other, is unhealthy.
reply="$(redis-cli -s /tmp/redis.sock PING 2>&1)"
case "$reply" in
    *NOAUTH*|PONG) echo "result store answers on its socket"; exit 0 ;;
    *) echo "result store did not answer as expected: $reply" >&2; exit 1 ;;
esac
