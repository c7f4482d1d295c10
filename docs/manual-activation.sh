#!/usr/bin/env bash
# Activates a device BY HAND against a running `iotcloud serve`, with curl and
# openssl only (plus base64, tr, sed, od from coreutils), and sends one DATA
# message as that device. Every request is the documented wire protocol
# (docs/manual-activation.md explains each step; protocol.md §1, §2, §3).
#
# usage: docs/manual-activation.sh DATA_DIR
#   DATA_DIR is the --data directory of the running iotcloud serve; the script
#   reads DATA_DIR/url, DATA_DIR/admin.token and DATA_DIR/ca.pem from it.
# env:   WORK=dir   keep the device key and intermediate files there
#                   (default: a new temporary directory)
#
# It exits non-zero at the first step that fails, printing the server's answer.
set -euo pipefail

DATA=${1:?usage: $0 DATA_DIR (the --data directory of a running iotcloud serve)}
for tool in curl openssl base64 tr sed od; do
  command -v "$tool" >/dev/null || { echo "manual walk: $tool is not installed" >&2; exit 3; }
done
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"

URL=$(cat "$DATA/url")                 # e.g. https://127.0.0.1:8443
ADMIN=$(cat "$DATA/admin.token")       # bearer token of the enterprise API
CURL=(curl -sS --fail-with-body --cacert "$DATA/ca.pem")
if [[ $URL == http://* ]]; then CURL=(curl -sS --fail-with-body); fi

step() { printf '\n== %s\n' "$*"; }
show() { printf '%s\n' "$*"; }
# b64url: base64url without padding (RFC 7515), from stdin.
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '=\n'; }
# field NAME: the string value of "NAME" in the compact JSON on stdin.
field() { sed -n 's/.*"'"$1"'":"\([^"]*\)".*/\1/p'; }
# now_s: epoch seconds.
now_s() { date +%s; }

MODEL=urn:com:example:manual:thermometer
step "0. add a device model (enterprise API, admin token)"
"${CURL[@]}" -o "$WORK/model.json" -X POST "$URL/iot/api/v2/deviceModels" \
  -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  --data '{"urn":"'"$MODEL"'","name":"Manual thermometer","attributes":[{"name":"temperature","type":"NUMBER","range":"-40,125"},{"name":"setPoint","type":"NUMBER","range":"5,30","writable":true}]}'
show "$(cat "$WORK/model.json")"

step "1. register a device (enterprise API): the answer carries its id and shared secret"
HW="manual-walk-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
REG=$("${CURL[@]}" -X POST "$URL/iot/api/v2/devices" \
  -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  --data '{"hardwareId":"'"$HW"'","type":"DIRECTLY_CONNECTED_DEVICE"}')
ID=$(printf '%s' "$REG" | field id)
SECRET=$(printf '%s' "$REG" | field sharedSecret)
show "$(printf '%s' "$REG" | sed 's/"sharedSecret":"[^"]*"/"sharedSecret":"(hidden)"/')"
show "activation id: $ID"

step "2. HS256 client assertion signed with the shared secret (openssl dgst -hmac)"
HEADER=$(printf '{"typ":"JWT","alg":"HS256"}' | b64url)
CLAIMS=$(printf '{"iss":"%s","sub":"%s","aud":"oracle/iot/oauth2/token","exp":%d}' "$ID" "$ID" $(( $(now_s) + 900 )) | b64url)
SIG=$(printf '%s.%s' "$HEADER" "$CLAIMS" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)
ASSERTION="$HEADER.$CLAIMS.$SIG"
show "header.claims: $(printf '%s.%s' "$HEADER" "$CLAIMS")"

step "3. activation token (scope oracle/iot/activation)"
TOK=$("${CURL[@]}" -X POST "$URL/iot/api/v2/oauth2/token" \
  -H 'Content-Type: application/x-www-form-urlencoded' -H 'Accept: application/json' \
  --data 'grant_type=client_credentials' \
  --data 'client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer' \
  --data "client_assertion=$ASSERTION" \
  --data 'scope=oracle/iot/activation')
show "$(printf '%s' "$TOK" | sed 's/"access_token":"[^"]*"/"access_token":"(hidden)"/')"
ACT_TOKEN=$(printf '%s' "$TOK" | field access_token)

step "4. activation policy"
"${CURL[@]}" -o "$WORK/policy.json" "$URL/iot/api/v2/activation/policy?OSName=Linux&OSVersion=6" \
  -H "Authorization: Bearer $ACT_TOKEN" -H "X-ActivationId: $ID" -H 'Accept: application/json'
show "$(cat "$WORK/policy.json")"
ALG=$(field hashAlgorithm < "$WORK/policy.json")

step "5. RSA 2048 key pair and the direct-activation signature"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/device-key.pem" 2>/dev/null
chmod 600 "$WORK/device-key.pem"
openssl pkey -in "$WORK/device-key.pem" -pubout -outform DER -out "$WORK/device-pub.der"
# Signature input: subject \n algorithm \n format \n secretHashAlgorithm \n,
# then HMAC-SHA256(shared secret, activation id) (32 bytes), then the DER key.
printf '%s\n%s\n%s\n%s\n' "$ID" RSA X.509 HmacSHA256 > "$WORK/activation-input.bin"
printf '%s' "$ID" | openssl dgst -sha256 -hmac "$SECRET" -binary >> "$WORK/activation-input.bin"
cat "$WORK/device-pub.der" >> "$WORK/activation-input.bin"
ACT_SIG=$(openssl dgst -sha256 -sign "$WORK/device-key.pem" "$WORK/activation-input.bin" | base64 -w0)
PUB=$(base64 -w0 < "$WORK/device-pub.der")
show "signature input: $(wc -c < "$WORK/activation-input.bin") bytes; signature: ${ACT_SIG:0:24}..."

step "6. direct activation"
cat > "$WORK/activation.json" <<EOF
{"certificationRequestInfo":{"subject":"$ID","subjectPublicKeyInfo":{"algorithm":"RSA","publicKey":"$PUB","format":"X.509","secretHashAlgorithm":"HmacSHA256"},"attributes":{}},"signatureAlgorithm":"$ALG","signature":"$ACT_SIG","deviceModels":["$MODEL","urn:oracle:iot:dcd:capability:direct_activation","urn:oracle:iot:dcd:capability:device_policy"]}
EOF
ACT=$("${CURL[@]}" -X POST "$URL/iot/api/v2/activation/direct?createDraft=false" \
  -H "Authorization: Bearer $ACT_TOKEN" -H "X-ActivationId: $ID" \
  -H 'Content-Type: application/json' -H 'Accept: application/json' \
  --data @"$WORK/activation.json")
show "$ACT"
EP=$(printf '%s' "$ACT" | field endpointId)
[[ $(printf '%s' "$ACT" | field endpointState) == ACTIVATED ]] || { echo "manual walk: activation did not answer ACTIVATED" >&2; exit 1; }

step "7. RS256 client assertion signed with the device key, and a device token (empty scope)"
HEADER=$(printf '{"typ":"JWT","alg":"RS256"}' | b64url)
CLAIMS=$(printf '{"iss":"%s","sub":"%s","aud":"oracle/iot/oauth2/token","exp":%d}' "$EP" "$EP" $(( $(now_s) + 900 )) | b64url)
SIG=$(printf '%s.%s' "$HEADER" "$CLAIMS" | openssl dgst -sha256 -sign "$WORK/device-key.pem" | b64url)
TOK=$("${CURL[@]}" -X POST "$URL/iot/api/v2/oauth2/token" \
  -H 'Content-Type: application/x-www-form-urlencoded' -H 'Accept: application/json' \
  --data 'grant_type=client_credentials' \
  --data 'client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer' \
  --data "client_assertion=$HEADER.$CLAIMS.$SIG" \
  --data 'scope=')
show "$(printf '%s' "$TOK" | sed 's/"access_token":"[^"]*"/"access_token":"(hidden)"/')"
DEV_TOKEN=$(printf '%s' "$TOK" | field access_token)

step "8. send a DATA message as the device"
CLIENT_ID=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | sed 's/\(........\)\(....\)\(....\)\(....\)/\1-\2-\3-\4-/')
MSG='[{"clientId":"'"$CLIENT_ID"'","source":"'"$EP"'","destination":"","priority":"LOW","reliability":"BEST_EFFORT","eventTime":'$(( $(now_s) * 1000 ))',"type":"DATA","payload":{"format":"'"$MODEL"':attributes","data":{"temperature":21.5}}}]'
show "$MSG"
ANSWER=$("${CURL[@]}" -X POST "$URL/iot/api/v2/messages?acceptBytes=4192" \
  -H "Authorization: Bearer $DEV_TOKEN" -H "X-EndpointId: $EP" \
  -H 'Content-Type: application/json' -H 'Accept: application/json' \
  -w ' (HTTP %{http_code})' --data "$MSG")
show "answer: $ANSWER"

step "9. the message as the enterprise API stores it"
STORED=$("${CURL[@]}" "$URL/iot/api/v2/messages?source=$EP" -H "Authorization: Bearer $ADMIN")
show "$STORED"
case $STORED in
  *"$CLIENT_ID"*) ;;
  *) echo "manual walk: the message $CLIENT_ID is not in GET /messages" >&2; exit 1 ;;
esac

step "10. set an attribute through the enterprise API: the cloud queues a REQUEST"
SET=$("${CURL[@]}" -X PUT "$URL/iot/api/v2/devices/$EP/deviceModels/$MODEL/attributes/setPoint" \
  -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' --data '{"value":22.5}')
show "$SET"
REQ=$(printf '%s' "$SET" | field requestId)

step "11. the device polls (POST an empty batch) and receives the REQUEST"
POLL=$("${CURL[@]}" -X POST "$URL/iot/api/v2/messages?acceptBytes=4192" \
  -H "Authorization: Bearer $DEV_TOKEN" -H "X-EndpointId: $EP" \
  -H 'Content-Type: application/json' -H 'Accept: application/json' --data '[]')
show "$POLL"
REQ_MSG_ID=$(printf '%s' "$POLL" | field id)
REQ_SOURCE=$(printf '%s' "$POLL" | field source)
BODY=$(printf '%s' "$POLL" | field body | base64 -d)
show "request body (base64-decoded): $BODY"

step "12. the device answers with a RESPONSE message (requestId = the REQUEST's id, body base64)"
RESP_ID=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | sed 's/\(........\)\(....\)\(....\)\(....\)/\1-\2-\3-\4-/')
RESP='[{"clientId":"'"$RESP_ID"'","source":"'"$EP"'","destination":"'"$REQ_SOURCE"'","priority":"HIGH","reliability":"BEST_EFFORT","eventTime":'$(( $(now_s) * 1000 ))',"type":"RESPONSE","payload":{"statusCode":200,"url":"","requestId":"'"$REQ_MSG_ID"'","headers":{},"body":"'"$(printf OK | base64)"'"}}]'
show "$RESP"
"${CURL[@]}" -o /dev/null -w 'answer: HTTP %{http_code}\n' -X POST "$URL/iot/api/v2/messages" \
  -H "Authorization: Bearer $DEV_TOKEN" -H "X-EndpointId: $EP" \
  -H 'Content-Type: application/json' --data "$RESP"

step "13. the request as the enterprise API reports it"
STATE=$("${CURL[@]}" "$URL/iot/api/v2/requests/$REQ" -H "Authorization: Bearer $ADMIN")
show "$STATE"
[[ $(printf '%s' "$STATE" | field status) == COMPLETED ]] || { echo "manual walk: request $REQ is not COMPLETED" >&2; exit 1; }

printf '\nmanual walk: OK (device %s activated as endpoint %s, message %s stored, request %s COMPLETED)\n' "$ID" "$EP" "$CLIENT_ID" "$REQ"
