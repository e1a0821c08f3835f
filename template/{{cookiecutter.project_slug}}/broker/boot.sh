#!/bin/sh
# The broker's entry point: RabbitMQ, then its users and permissions made exactly those of the definitions file
# (CRED-05).
#
# Why: RabbitMQ imports definitions at boot *additively*. The users, permissions and topic permissions already on
# the data volume stay, so a user or grant removed from secrets/definitions.json (a retired role, a revoked
# cross-tenant grant) would keep working after the restart meant to remove it. This script removes what the file
# no longer lists, and closes the connections of every user it touched. It prints READY only afterwards, and the
# healthcheck passes only afterwards, so no worker is started against a broker that still knows a removed user.
# Vhosts are left alone: deleting one destroys its messages (`rabbitmqctl delete_vhost` does it, deliberately).
#
# `broker-boot reconcile` does the same on a running broker after you edit the definitions: import them, then
# remove what they no longer list (docker compose exec broker broker-boot reconcile).
#
# `broker-boot reload-tls` makes the running broker read its certificate and key files again, after
# `python -m tls rotate broker` rewrote them in place: new handshakes present the new certificate, connections
# already open keep theirs, nothing restarts (TLS-07). Erlang caches the PEM files it has read; clearing that
# cache is RabbitMQ's documented way to rotate them.
#
# `broker-boot health` is the image's healthcheck: definitions reconciled, the node running, and in its output
# (which `docker inspect` keeps) when the broker's certificate expires; unhealthy once it has.
set -eu
umask 077                                    # the broker's exported definitions hold password hashes

DEFINITIONS=/run/secrets/definitions.json
CURRENT=/tmp/current-definitions.json
MARKER=/tmp/definitions-reconciled          # the healthcheck's proof (tmpfs: gone when the container stops)
READY="definitions reconciled"              # tests/harness/readiness.py waits for this line
CERTIFICATE=${BROKER_CERTIFICATE:-/run/secrets/broker.crt}
WARN_DAYS=30                                # as `python -m tls inspect`: time to rotate before clients refuse it

say() { echo "broker-boot: $*"; }

remove_stale() {
    rabbitmqctl -q export_definitions "$CURRENT" --format json >/dev/null
    # What the running broker holds beyond the file, as one CLI command per line (Erlang's own JSON parser: the image
    # has no other). User, vhost and exchange names never contain spaces (the template and tools/credentials.py
    # make them), so a line splits on spaces.
    stale=$(erl -noshell -eval '
      try
        Read = fun(Path) -> {ok, Bin} = file:read_file(Path), json:decode(Bin) end,
        Wanted = Read("'"$DEFINITIONS"'"), Running = Read("'"$CURRENT"'"),
        Get = fun(Defs, Key) -> maps:get(Key, Defs, []) end,
        Users = fun(Defs) -> [maps:get(<<"name">>, U) || U <- Get(Defs, <<"users">>)] end,
        Grants = fun(Defs) -> [{maps:get(<<"user">>, G), maps:get(<<"vhost">>, G)} || G <- Get(Defs, <<"permissions">>)] end,
        Topics = fun(Defs) -> [{maps:get(<<"user">>, G), maps:get(<<"vhost">>, G), maps:get(<<"exchange">>, G)}
                               || G <- Get(Defs, <<"topic_permissions">>)] end,
        Keep = Users(Wanted),
        [io:format("delete_user ~s~n", [U]) || U <- Users(Running), not lists:member(U, Keep)],
        [io:format("clear_permissions ~s ~s~n", [U, V]) || {U, V} <- Grants(Running),
                                                           lists:member(U, Keep), not lists:member({U, V}, Grants(Wanted))],
        [io:format("clear_topic_permissions ~s ~s ~s~n", [U, V, E]) || {U, V, E} <- Topics(Running),
                                                           lists:member(U, Keep), not lists:member({U, V, E}, Topics(Wanted))],
        halt(0)
      catch Class:Reason ->
        io:format(standard_error, "broker-boot: cannot compare the definitions: ~p:~p~n", [Class, Reason]),
        halt(1)
      end.')
    rm -f "$CURRENT"

    changes=0
    touched=""
    while read -r action user vhost exchange; do
        [ -n "$action" ] || continue
        case "$action" in
            delete_user) rabbitmqctl -q delete_user "$user" ;;
            clear_permissions) rabbitmqctl -q clear_permissions -p "$vhost" "$user" ;;
            clear_topic_permissions) rabbitmqctl -q clear_topic_permissions -p "$vhost" "$user" "$exchange" ;;
        esac
        say "removed: $action $user${vhost:+ $vhost}${exchange:+ $exchange} (not in $DEFINITIONS)"
        changes=$((changes + 1))
        case " $touched " in *" $user "*) ;; *) touched="$touched $user" ;; esac
    done <<EOF
$stale
EOF
    # A connection opened in the seconds before this ran keeps what it was granted: close them all.
    for user in $touched; do
        rabbitmqctl -q close_all_user_connections "$user" "removed from the broker definitions" >/dev/null || true
    done
}

# One line on the broker certificate's expiry (openssl and GNU date: both in the official image and the stand-in);
# fails once it has expired.
certificate_expiry() {
    end=$(openssl x509 -in "$CERTIFICATE" -noout -enddate 2>/dev/null) \
        || { echo "broker certificate $CERTIFICATE unreadable"; return 1; }
    end=${end#notAfter=}
    day=$(date -u -d "$end" +%Y-%m-%d)
    if ! openssl x509 -in "$CERTIFICATE" -noout -checkend 0 >/dev/null; then
        echo "broker certificate expired on $day"
        return 1
    fi
    left=$(( ($(date -d "$end" +%s) - $(date +%s)) / 86400 ))
    line="broker certificate expires $day ($left days left)"
    [ "$left" -ge "$WARN_DAYS" ] || line="$line; rotate it now: python -m tls rotate broker"
    echo "$line"
}

if [ "${1:-}" = health ]; then
    [ -e "$MARKER" ] || { say "definitions not reconciled yet"; exit 1; }
    rabbitmq-diagnostics -q check_running
    certificate_expiry
    exit $?
fi

if [ "${1:-}" = reload-tls ]; then
    rabbitmqctl -q eval 'ssl:clear_pem_cache().' >/dev/null
    serial=$(openssl x509 -in "$CERTIFICATE" -noout -serial)
    say "TLS files reloaded: new handshakes present the certificate with ${serial}; $(certificate_expiry || true)"
    exit 0
fi

if [ "${1:-}" = reconcile ]; then
    rabbitmqctl -q import_definitions "$DEFINITIONS" >/dev/null
    remove_stale
    say "$READY with $DEFINITIONS: $changes stale users or grants removed"
    exit 0
fi

rm -f "$MARKER"
rabbitmq-server &
server=$!
# compose stop / docker stop: hand SIGTERM to RabbitMQ (a clean shutdown) and exit with its status.
trap 'kill -TERM "$server" 2>/dev/null || true; wait "$server"; exit $?' TERM INT

# The CLI can reach the node only once it has written its cookie: retry for a while, give up loudly.
tries=0
until rabbitmqctl -q await_startup >/dev/null 2>&1; do
    kill -0 "$server" 2>/dev/null || { say "RabbitMQ exited during startup"; wait "$server"; exit $?; }
    tries=$((tries + 1))
    [ "$tries" -lt 120 ] || { say "RabbitMQ did not start within 120 attempts; stopping"; kill -TERM "$server"; exit 1; }
    sleep 1
done

remove_stale
touch "$MARKER"
say "$READY with $DEFINITIONS: $changes stale users or grants removed"
wait "$server"
