#!/usr/bin/env bash
# Pushes and pulls blobs with plain curl against a running registry, checking every status and
# header: story 006's monolithic flow, a real image layer (a gzip-compressed tar of this
# repository's src/) pulled back bit-identical, and story 012's chunked flow.
#
# Usage: tests/e2e/curl_flow.sh http://127.0.0.1:5000
# Prints "ok <step>" per step; exits non-zero at the first failure.
set -euo pipefail

BASE="${1:?usage: $0 <registry base URL, e.g. http://127.0.0.1:5000>}"
BASE="${BASE%/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

fail() {
  echo "not ok $1: $2" >&2
  if [[ "$(head -c 1 "$WORK/body" 2>/dev/null)" == "{" ]]; then
    echo "  body: $(head -c 500 "$WORK/body")" >&2
  fi
  exit 1
}

# request METHOD PATH [curl args...]: sends the request, keeps headers and body in $WORK,
# and sets STATUS.
request() {
  local method="$1" path="$2"
  shift 2
  local url="$path"
  [[ "$url" == http* ]] || url="$BASE$path"
  local args=(-sS -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}')
  if [[ "$method" == HEAD ]]; then args+=(-I); else args+=(-X "$method"); fi
  STATUS="$(curl "${args[@]}" "$@" "$url")"
}

# header NAME: the value of a response header of the last request ("" when absent).
header() {
  { grep -i "^$1:" "$WORK/headers" || true; } | head -n 1 | cut -d: -f2- | tr -d '\r' |
    sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//'
}

# expect STEP WHAT ACTUAL EXPECTED
expect() {
  [[ "$3" == "$4" ]] || fail "$1" "$2 is '$3', expected '$4'"
}

# expect_match STEP WHAT ACTUAL REGEX
expect_match() {
  [[ "$3" =~ $4 ]] || fail "$1" "$2 '$3' does not match $4"
}

digest_of() {
  echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"
}

size_of() {
  wc -c <"$1" | tr -d ' '
}

# start_upload STEP NAME: POST a session; sets LOCATION and UUID.
start_upload() {
  request POST "/v2/$2/blobs/uploads/"
  expect "$1" "POST status" "$STATUS" 202
  UUID="$(header Docker-Upload-UUID)"
  expect_match "$1" "Docker-Upload-UUID" "$UUID" '^[0-9a-f-]{36}$'
  LOCATION="$(header Location)"
  expect "$1" "Location" "$LOCATION" "/v2/$2/blobs/uploads/$UUID"
  expect "$1" "Range" "$(header Range)" "0-0"
  expect "$1" "API version" "$(header Docker-Distribution-API-Version)" "registry/2.0"
}

# pull_and_compare STEP NAME DIGEST FILE: HEAD and GET the blob; GET's bytes must equal FILE.
pull_and_compare() {
  request HEAD "/v2/$2/blobs/$3"
  expect "$1" "HEAD status" "$STATUS" 200
  expect "$1" "HEAD Content-Length" "$(header Content-Length)" "$(size_of "$4")"
  expect "$1" "HEAD Docker-Content-Digest" "$(header Docker-Content-Digest)" "$3"
  request GET "/v2/$2/blobs/$3"
  expect "$1" "GET status" "$STATUS" 200
  expect "$1" "GET Docker-Content-Digest" "$(header Docker-Content-Digest)" "$3"
  cmp -s "$WORK/body" "$4" || fail "$1" "pulled bytes differ from the pushed ones"
  cp "$WORK/body" "$WORK/pulled"
}

# --- the registry answers -------------------------------------------------------------------
request GET /v2/
expect base "status" "$STATUS" 200
expect base "API version" "$(header Docker-Distribution-API-Version)" "registry/2.0"
echo "ok base: GET /v2/ is 200 with registry/2.0"

# --- story 006: monolithic upload -----------------------------------------------------------
head -c 300000 /dev/urandom >"$WORK/mono.bin"
MONO="$(digest_of "$WORK/mono.bin")"
start_upload monolithic curl/mono
echo "ok monolithic: POST is 202 with Location, Docker-Upload-UUID and Range 0-0"

request PUT "$LOCATION?digest=$MONO" -H 'Content-Type: application/octet-stream' \
  --data-binary "@$WORK/mono.bin"
expect monolithic "PUT status" "$STATUS" 201
expect monolithic "PUT Location" "$(header Location)" "/v2/curl/mono/blobs/$MONO"
expect monolithic "PUT Docker-Content-Digest" "$(header Docker-Content-Digest)" "$MONO"
echo "ok monolithic: PUT with the body is 201 with Location and Docker-Content-Digest"

pull_and_compare monolithic curl/mono "$MONO" "$WORK/mono.bin"
echo "ok monolithic: HEAD and GET give the blob back"

request PUT "$LOCATION?digest=$MONO" --data-binary "@$WORK/mono.bin"
expect monolithic "PUT on the finished session" "$STATUS" 404
grep -q '"BLOB_UPLOAD_UNKNOWN"' "$WORK/body" || fail monolithic "no BLOB_UPLOAD_UNKNOWN"
start_upload monolithic curl/mono
request PUT "$LOCATION?digest=sha256:$(printf '0%.0s' {1..64})" --data-binary "@$WORK/mono.bin"
expect monolithic "PUT with a wrong digest" "$STATUS" 400
grep -q '"DIGEST_INVALID"' "$WORK/body" || fail monolithic "no DIGEST_INVALID"
echo "ok monolithic: a finished session is 404 BLOB_UPLOAD_UNKNOWN, a wrong digest 400 DIGEST_INVALID"

# --- a real image layer: tar.gz of src/, pushed and pulled back bit-identical ---------------
tar czf "$WORK/layer.tar.gz" -C "$ROOT" src
LAYER="$(digest_of "$WORK/layer.tar.gz")"
start_upload layer curl/image
request PUT "$LOCATION?digest=$LAYER" -H 'Content-Type: application/octet-stream' \
  --data-binary "@$WORK/layer.tar.gz"
expect layer "PUT status" "$STATUS" 201
expect layer "PUT Docker-Content-Digest" "$(header Docker-Content-Digest)" "$LAYER"
pull_and_compare layer curl/image "$LAYER" "$WORK/layer.tar.gz"
mkdir "$WORK/unpacked"
tar xzf "$WORK/pulled" -C "$WORK/unpacked"
diff -r "$ROOT/src" "$WORK/unpacked/src" >/dev/null || fail layer "unpacked files differ from src/"
echo "ok layer: a $(size_of "$WORK/layer.tar.gz")-byte tar.gz of src/ round-trips bit-identical"

# --- story 012: chunked upload --------------------------------------------------------------
head -c 25480 /dev/urandom >"$WORK/chunked.bin"
head -c 10240 "$WORK/chunked.bin" >"$WORK/chunk1"
# (no `tail | head` pipe: with pipefail, `tail` may die of SIGPIPE when `head` exits first)
dd if="$WORK/chunked.bin" of="$WORK/chunk2" bs=10240 skip=1 count=1 status=none
tail -c +20481 "$WORK/chunked.bin" >"$WORK/chunk3"
expect chunked "final chunk size" "$(size_of "$WORK/chunk3")" 5000
CHUNKED="$(digest_of "$WORK/chunked.bin")"
start_upload chunked curl/chunked

request PATCH "$LOCATION" -H 'Content-Type: application/octet-stream' \
  -H 'Content-Range: 0-10239' --data-binary "@$WORK/chunk1"
expect chunked "first PATCH status" "$STATUS" 202
expect chunked "first PATCH Location" "$(header Location)" "$LOCATION"
expect chunked "first PATCH Range" "$(header Range)" "0-10239"
expect chunked "first PATCH Docker-Upload-UUID" "$(header Docker-Upload-UUID)" "$UUID"
echo "ok chunked: first chunk (Content-Range 0-10239) is 202 with Location, Range 0-10239, UUID"

request GET "$LOCATION"
expect chunked "status GET" "$STATUS" 204
expect chunked "status GET Range" "$(header Range)" "0-10239"
expect chunked "status GET Location" "$(header Location)" "$LOCATION"
echo "ok chunked: GET on the session is 204 with Range 0-10239"

request PATCH "$LOCATION" -H 'Content-Type: application/octet-stream' \
  -H 'Content-Range: 0-10239' --data-binary "@$WORK/chunk1"
expect chunked "repeated chunk status" "$STATUS" 416
grep -q '"BLOB_UPLOAD_INVALID"' "$WORK/body" || fail chunked "no BLOB_UPLOAD_INVALID"
echo "ok chunked: resending the first chunk is 416 BLOB_UPLOAD_INVALID"

request PATCH "$LOCATION" -H 'Content-Type: application/octet-stream' \
  -H 'Content-Range: 10240-20479' --data-binary "@$WORK/chunk2"
expect chunked "second PATCH status" "$STATUS" 202
expect chunked "second PATCH Range" "$(header Range)" "0-20479"
expect chunked "second PATCH Location" "$(header Location)" "$LOCATION"
echo "ok chunked: subsequent chunk (Content-Range 10240-20479) is 202 with Range 0-20479"

request PUT "$LOCATION?digest=$CHUNKED" -H 'Content-Type: application/octet-stream' \
  --data-binary "@$WORK/chunk3"
expect chunked "PUT status" "$STATUS" 201
expect chunked "PUT Location" "$(header Location)" "/v2/curl/chunked/blobs/$CHUNKED"
expect chunked "PUT Docker-Content-Digest" "$(header Docker-Content-Digest)" "$CHUNKED"
echo "ok chunked: PUT with the 5000-byte final chunk is 201 with Location and Docker-Content-Digest"

pull_and_compare chunked curl/chunked "$CHUNKED" "$WORK/chunked.bin"
echo "ok chunked: the blob reads back as the three chunks joined"

# --- Docker's shape: one streaming PATCH (chunked transfer encoding), then an empty PUT -----
start_upload streaming curl/streaming
head -c 1000000 /dev/urandom >"$WORK/stream.bin"
STREAM="$(digest_of "$WORK/stream.bin")"
request PATCH "$LOCATION" -H 'Content-Type: application/octet-stream' \
  -H 'Transfer-Encoding: chunked' -H 'Expect:' --data-binary "@$WORK/stream.bin"
expect streaming "PATCH status" "$STATUS" 202
expect streaming "PATCH Range" "$(header Range)" "0-999999"
request PUT "$LOCATION?digest=$STREAM"
expect streaming "empty PUT status" "$STATUS" 201
pull_and_compare streaming curl/streaming "$STREAM" "$WORK/stream.bin"
echo "ok streaming: a chunked-encoding PATCH without Content-Range, then an empty PUT, is 201"
