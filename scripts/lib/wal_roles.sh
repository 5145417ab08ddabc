# shellcheck shell=bash
# wal_roles KIND: which of the test environment's two Milvus servers is the source and which
# the target when the WAL is read from KIND (kafka or rocksmq), for scripts that run ferry on
# it (scripts/demo, scripts/bench-cdc). Needs target/testenv/env.sh sourced. Sets:
#   WAL_SRC_URI, WAL_DST_URI  the source and the target
#   WAL_TOML                  the body of the job file's [source.wal] table, less topic_prefix
#   WAL_BATCH_BYTES           batch bytes to write into that target instead of ferry's
#                             default (8 MiB), or empty
#
# kafka: the first Milvus, WAL on the Kafka-protocol broker, into the second. rocksmq: the
# second Milvus keeps its WAL in RocksMQ, as a docker-compose standalone does, and ferry reads
# that RocksDB through a secondary instance (read-only, beside Milvus); the target is then the
# Kafka-backed Milvus, whose broker (tansu) cannot serve an insert of ~7 MB to Milvus's data
# node (that channel stops flushing, "channel not found"; seen 2026-12-05): 2 MiB batches.
wal_roles() {
    case $1 in
        kafka)
            WAL_SRC_URI=$FERRY_TEST_SOURCE_URI
            WAL_DST_URI=$FERRY_TEST_TARGET_URI
            WAL_TOML="brokers = \"$FERRY_TEST_KAFKA_BROKERS\""
            WAL_BATCH_BYTES=""
            ;;
        rocksmq)
            WAL_SRC_URI=$FERRY_TEST_TARGET_URI
            WAL_DST_URI=$FERRY_TEST_SOURCE_URI
            WAL_TOML="rocksmq = \"$FERRY_TEST_TARGET_DATA_DIR/rocksmq\""
            WAL_BATCH_BYTES=$((2 << 20))
            ;;
        *) echo "wal_roles: kafka or rocksmq, not '$1'" >&2; return 2 ;;
    esac
}
