#!/usr/bin/env bash
# ============================================================================================
#  DEVELOPMENT ONLY - NOT FOR PRODUCTION.
#  Creates a throw-away certificate authority, a SuperLink TLS certificate signed by it, and
#  one SuperNode authentication key pair per hospital, all unencrypted on local disk.
#  In production the server certificate comes from your organisation's PKI and every hospital
#  creates its own SuperNode key on its own machine and sends only the PUBLIC key to the
#  consortium (see README, "Running it as a Flower app").
# ============================================================================================
#
# Usage: deploy/dev_ca.sh [--out DIR] [--server-name NAME]... [--site NAME]... [--force]
#
#   --out DIR          where to write (default: ./dev-pki); a .gitignore keeps it out of git
#   --server-name NAME a DNS name or IP address the SuperLink is reached at; repeatable.
#                      localhost and 127.0.0.1 are always included. Every name the SuperNodes
#                      and `flwr` use in --superlink / address must be listed here.
#   --site NAME        a hospital to make a SuperNode key for; repeatable
#                      (default: hospital-1 hospital-2 hospital-3)
#   --force            overwrite an existing DIR's files (otherwise the script refuses)
#
# Writes:
#   DIR/ca.crt                     the CA certificate (give it to every site and to `flwr`)
#   DIR/ca.key                     the CA private key (keep it; needed only to sign again)
#   DIR/server.crt, server.key     the SuperLink's certificate (SAN = the names above) and key
#   DIR/supernodes/NAME, NAME.pub  each hospital's SuperNode key pair (OpenSSH ECDSA P-256;
#                                  Flower rejects Ed25519). NAME stays at the hospital,
#                                  NAME.pub is registered with `flwr supernode register`.
set -euo pipefail

out="dev-pki"
sites=()
names=()
force=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --server-name) names+=("$2"); shift 2 ;;
    --site) sites+=("$2"); shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "dev_ca.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[[ ${#sites[@]} -gt 0 ]] || sites=(hospital-1 hospital-2 hospital-3)
command -v openssl >/dev/null || { echo "dev_ca.sh: openssl not found" >&2; exit 1; }
command -v ssh-keygen >/dev/null || { echo "dev_ca.sh: ssh-keygen not found" >&2; exit 1; }

if [[ -e "$out/ca.crt" && $force -eq 0 ]]; then
  echo "dev_ca.sh: $out/ca.crt exists; use --force to replace it (every site then needs the new ca.crt)" >&2
  exit 1
fi
mkdir -p "$out/supernodes"
chmod 700 "$out"
printf '# development keys: never commit\n*\n' > "$out/.gitignore"
echo "development PKI made by deploy/dev_ca.sh - NOT FOR PRODUCTION" > "$out/NOT-FOR-PRODUCTION"

# Subject alternative names: always localhost + 127.0.0.1, plus every --server-name.
san="DNS:localhost,IP:127.0.0.1"
for name in "${names[@]+"${names[@]}"}"; do
  if [[ "$name" == localhost || "$name" == 127.0.0.1 ]]; then continue; fi
  if [[ "$name" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || "$name" == *:* ]]; then
    san="$san,IP:$name"
  else
    san="$san,DNS:$name"
  fi
done

umask 077
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# 1. The CA (RSA 4096, 10 years: development only).
openssl genrsa -out "$out/ca.key" 4096 2>/dev/null
openssl req -x509 -new -key "$out/ca.key" -sha256 -days 3650 -out "$out/ca.crt" \
  -subj "/O=medgan-fl development/CN=medgan-fl DEV CA - NOT FOR PRODUCTION" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"

# 2. The SuperLink's certificate, signed by the CA (RSA 2048, 1 year).
openssl genrsa -out "$out/server.key" 2048 2>/dev/null
openssl req -new -key "$out/server.key" -out "$tmp/server.csr" \
  -subj "/O=medgan-fl development/CN=medgan-fl superlink"
cat > "$tmp/server.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EOF
openssl x509 -req -in "$tmp/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
  -CAcreateserial -out "$out/server.crt" -days 365 -sha256 -extfile "$tmp/server.ext" 2>/dev/null
rm -f "$out/ca.srl"
openssl verify -CAfile "$out/ca.crt" "$out/server.crt" >/dev/null

# 3. One SuperNode authentication key pair per hospital (OpenSSH ECDSA P-256, no passphrase).
for site in "${sites[@]}"; do
  [[ "$site" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "dev_ca.sh: bad site name '$site'" >&2; exit 2; }
  rm -f "$out/supernodes/$site" "$out/supernodes/$site.pub"
  ssh-keygen -q -t ecdsa -b 256 -N "" -C "$site" -f "$out/supernodes/$site"
done

# Certificates and public keys are not secret; containers running as another user must read them.
chmod 644 "$out/ca.crt" "$out/server.crt" "$out"/supernodes/*.pub
chmod 755 "$out" "$out/supernodes"

echo "development PKI (NOT FOR PRODUCTION) in $out:"
echo "  CA          $out/ca.crt"
echo "  SuperLink   $out/server.crt  $out/server.key  (SAN: $san)"
for site in "${sites[@]}"; do
  echo "  SuperNode   $out/supernodes/$site  $out/supernodes/$site.pub"
done
