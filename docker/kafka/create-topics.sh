#!/bin/bash
# Creates podrec's topics on the compose Kafka (kafka-init service); safe to re-run (--if-not-exists).
# Partitions come from the same settings the code uses; raising them later: see docker/README.md.
set -euo pipefail
topics=/opt/kafka/bin/kafka-topics.sh
bootstrap=kafka:9092
retention_ms="${PODREC_KAFKA_RETENTION_MS:--1}"
episode_partitions="${PODREC_EPISODE_TOPIC_PARTITIONS:-1}"
event_partitions="${PODREC_USER_EVENTS_PARTITIONS:-6}"
if (( event_partitions < 3 )); then event_partitions=3; fi   # the code asks for at least 3 as well

create() {  # topic partitions
    "$topics" --bootstrap-server "$bootstrap" --create --if-not-exists --topic "$1" --partitions "$2" \
        --replication-factor 1 --config "retention.ms=$retention_ms" --config message.timestamp.type=CreateTime
}
create episode-metadata "$episode_partitions"
create episode-ids "$episode_partitions"
create user-events "$event_partitions"
"$topics" --bootstrap-server "$bootstrap" --describe --topic 'episode-metadata|episode-ids|user-events' | grep -E '^Topic:'
