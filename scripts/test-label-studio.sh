#!/usr/bin/env bash
# Run the Label Studio bridge's live test (tests/human/test_label_studio_live.py) against a real Label Studio server.
#
# Label Studio (Django, SQLite) pins its own Django, pydantic and friends, so it gets its own virtualenv,
# .venv-label-studio in the repo root; the first run installs it from PyPI (a few minutes), later runs reuse it
# while scripts/label_studio_requirements.txt and this script are unchanged (delete .venv-label-studio to start
# over). The server runs from that environment on 127.0.0.1 with a fresh data folder, a known admin and API token,
# and every outbound call off (error reports, usage analytics, the PyPI version check, converter downloads);
# the test itself runs in rlaif's environment ($RLAIF_PYTHON, default .venv/bin/python) and talks to it over
# HTTP. The export that run produces is saved over tests/human/fixtures/label_studio_export.json, which the
# main suite replays (tests/human/test_label_studio.py). Extra arguments go to pytest.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=.venv-label-studio
PYTHON=${PYTHON:-python3.11}
RLAIF_PYTHON=${RLAIF_PYTHON:-.venv/bin/python}
REQ=scripts/label_studio_requirements.txt
STAMP=$VENV/.rlaif-installed
want=$(cat "$0" "$REQ" | sha256sum | cut -d' ' -f1)

if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "== installing Label Studio into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r "$REQ"
    echo "$want" > "$STAMP"
else
    echo "== reusing $VENV"
fi

bash scripts/setup-browser.sh  # Debian chromium: one task is labelled in Label Studio's own editor

DATA=$(mktemp -d)
PORT=$("$RLAIF_PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
export RLAIF_LABEL_STUDIO_URL="http://127.0.0.1:$PORT"
export RLAIF_LABEL_STUDIO_TOKEN=rlaif-live-test-token-0001
export RLAIF_LABEL_STUDIO_EXPORT=${RLAIF_LABEL_STUDIO_EXPORT:-tests/human/fixtures/label_studio_export.json}

# Only the server sees these. A blank DSN turns error reporting (Sentry, server and page) off; the others stop
# usage analytics, the PyPI version check and the export converter's downloads. Legacy API tokens let the
# admin's fixed token (and the second annotator's own) authenticate.
(
    export LABEL_STUDIO_BASE_DATA_DIR="$DATA" SENTRY_DSN= FRONTEND_SENTRY_DSN= COLLECT_ANALYTICS=false \
        LATEST_VERSION_CHECK=false CONVERTER_DOWNLOAD_RESOURCES=false FEATURE_FLAGS_OFFLINE=true \
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true LABEL_STUDIO_USERNAME=alice@rlaif.test \
        LABEL_STUDIO_PASSWORD="alice-$RANDOM$RANDOM$RANDOM" LABEL_STUDIO_USER_TOKEN="$RLAIF_LABEL_STUDIO_TOKEN"
    exec "$VENV/bin/label-studio" start --no-browser --internal-host 127.0.0.1 --port "$PORT" \
        > "$DATA/server.log" 2>&1
) &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

echo "== starting Label Studio $("$VENV/bin/python" -c 'import label_studio; print(label_studio.__version__)') on $RLAIF_LABEL_STUDIO_URL (log: $DATA/server.log)"
for _ in $(seq 600); do  # the first start migrates a new database: a minute or two on a small machine
    if curl -sf "$RLAIF_LABEL_STUDIO_URL/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$SERVER" 2>/dev/null; then cat "$DATA/server.log"; echo "Label Studio did not start"; exit 1; fi
    sleep 1
done
curl -sf "$RLAIF_LABEL_STUDIO_URL/health" >/dev/null || { tail -50 "$DATA/server.log"; echo "Label Studio did not answer"; exit 1; }

PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$RLAIF_PYTHON" -m pytest -p no:cacheprovider -v \
    tests/human/test_label_studio_live.py "$@"
