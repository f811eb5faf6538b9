#!/bin/bash
# `minio server DIR`: moto's S3 server on port 9000 (objects in memory; DIR is ignored).
set -euo pipefail
: "${MINIO_ROOT_USER:?the S3 stand-in needs MINIO_ROOT_USER}" "${MINIO_ROOT_PASSWORD:?and MINIO_ROOT_PASSWORD}"
exec /opt/moto/bin/moto_server --host 0.0.0.0 --port 9000
