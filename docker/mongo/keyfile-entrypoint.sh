#!/bin/bash
# Entry point of the compose `mongo` service: a replica set with authentication needs a key file for the
# members' internal authentication. It is written from MONGO_REPLICA_SET_KEY (docker/.env) at every start,
# so no key is baked into an image or committed, then the image's own entry point takes over.
set -euo pipefail
: "${MONGO_REPLICA_SET_KEY:?set MONGO_REPLICA_SET_KEY in docker/.env (openssl rand -base64 756 | tr -d '\n')}"
keyfile=/data/configdb/replica-set.key
umask 077
printf '%s' "$MONGO_REPLICA_SET_KEY" > "$keyfile"
chmod 400 "$keyfile"
chown mongodb:mongodb "$keyfile"
unset MONGO_REPLICA_SET_KEY
exec docker-entrypoint.sh "$@"
