#!/usr/bin/env bash
# The torch-free path (build, inspect, merge) on another Python than the development one, in a
# virtual environment of its own (no system site-packages, no torch), with a local tokenizer
# both loaded through transformers and read back from the tokenizer cache.
#
#   scripts/check_old_python.sh [VERSION]     VERSION: a pyenv version prefix, default 3.10
#
# The environment is kept in ${MASKPREP_OLD_PYTHON_VENV:-$TMPDIR/maskprep-py<VERSION>} and reused.
# Exit 0 when every step works; the first failing step's output otherwise.
set -euo pipefail
version="${1:-3.10}"
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ -n "${MASKPREP_OLD_PYTHON:-}" ]; then
  interpreter="$MASKPREP_OLD_PYTHON"
else
  interpreter="$(pyenv prefix "$(pyenv latest "$version")")/bin/python"
fi
venv="${MASKPREP_OLD_PYTHON_VENV:-${TMPDIR:-/tmp}/maskprep-py$version}"
if [ ! -x "$venv/bin/python" ]; then
  "$interpreter" -m venv "$venv"
fi
# What build/inspect/merge import (pyproject's dependencies less torch and datasets, which only
# verify and load_dataset need).
"$venv/bin/python" -m pip install -q click numpy pyarrow rich tokenizers transformers zstandard

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=1 PYTHONPATH="$root" PYTHONDONTWRITEBYTECODE=1
export MASKPREP_TOKENIZER_CACHE="$work/cache"
run() { "$venv/bin/python" -m maskprep "$@"; }
inputs=("$root/sample_data/instructions.jsonl" "$root/sample_data/notes.txt")
common=(-t "$root/sample_data/tokenizer" --pad-token eos --add-eos --max-length 64 -q)

"$venv/bin/python" --version
run build "${inputs[@]}" "${common[@]}" -o "$work/first"     # loads transformers, fills the cache
run build "${inputs[@]}" "${common[@]}" -o "$work/second"    # reads the tokenizer cache
cmp "$work/first/data-00000.parquet" "$work/second/data-00000.parquet"
run inspect "$work/first" --strict > /dev/null
for index in 0 1; do
  run build "${inputs[@]}" "${common[@]}" -o "$work/part$index" --num-shards 2 --shard-index "$index"
done
run merge "$work/part0" "$work/part1" -o "$work/merged" > /dev/null
run inspect "$work/merged" --strict > /dev/null
echo "maskprep build/inspect/merge work on $("$venv/bin/python" --version)"
