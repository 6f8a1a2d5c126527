#!/usr/bin/env bash
# Fill provisioner/formats/fuzz/corpus/<target>/ (git-ignored) with seed inputs:
#  - the hand-made seeds committed in provisioner/formats/fuzz/seeds/<target>/,
#  - the regression inputs in provisioner/formats/tests/regressions/<target>/,
#  - the real Windows-made fixtures (hives, BCD stores, their .reg exports, and the device
#    elements found in those exports) from shared/fixtures beside the clone
#    (override with UFD_FIXTURES).
# Safe to run repeatedly; missing sources are skipped with a note.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
fixtures="${UFD_FIXTURES:-$root/../shared/fixtures}"
corpus="$here/corpus"
targets=(mbr vhd_footer hive_reader bcd_parser device_element reg_import vhdx_open)
# Fixture files larger than this are skipped: libFuzzer sets -max_len from the largest seed, and
# multi-MiB inputs (the 11 MiB Windows 7 SYSTEM hive, its .reg export) slow it down a hundredfold.
max_seed_bytes="${UFD_FUZZ_MAX_SEED:-262144}"

for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t"
  for src in "$here/seeds/$t" "$root/provisioner/formats/tests/regressions/$t"; do
    if [ -d "$src" ]; then
      find "$src" -maxdepth 1 -type f -exec cp -f {} "$corpus/$t/" \;
    fi
  done
done

if [ ! -d "$fixtures" ]; then
  echo "seeds.sh: no fixtures at $fixtures (set UFD_FIXTURES); hand-made seeds only" >&2
  exit 0
fi

# Hives and BCD stores: every regular file without an extension under hives/ and bcd/.
while IFS= read -r -d '' f; do
  name="$(echo "${f#"$fixtures"/}" | tr '/' '_')"
  cp -f "$f" "$corpus/hive_reader/$name"
  case "$f" in
    "$fixtures"/bcd/*) cp -f "$f" "$corpus/bcd_parser/$name" ;;
  esac
done < <(find "$fixtures/hives" "$fixtures/bcd" -type f ! -name '*.*' -size -"$((max_seed_bytes + 1))"c -print0)

# .reg exports (hivexregedit output) as import seeds.
while IFS= read -r -d '' f; do
  name="$(echo "${f#"$fixtures"/}" | tr '/' '_')"
  cp -f "$f" "$corpus/reg_import/$name"
done < <(find "$fixtures" -type f -name '*.hivex.reg' -size -"$((max_seed_bytes + 1))"c -print0)

# Device elements: the REG_BINARY "Element" values of element keys whose format nibble
# (bits 24-27 of the element type) is 1 = device, taken from the .reg exports.
python3 - "$fixtures" "$corpus/device_element" <<'PY'
import os, re, sys, hashlib
fixtures, out = sys.argv[1], sys.argv[2]
n = 0
for dirpath, _, files in os.walk(fixtures):
    for fn in files:
        if not fn.endswith('.hivex.reg'):
            continue
        text = open(os.path.join(dirpath, fn), encoding='utf-8', errors='replace').read()
        text = re.sub(r'\\\r?\n\s*', '', text)   # join continuation lines
        key = None
        for line in text.splitlines():
            m = re.match(r'^\[(.*)\]$', line)
            if m:
                key = m.group(1).rsplit('\\', 1)[-1]
                continue
            m = re.match(r'^"Element"=hex\(3\):([0-9a-fA-F,]*)$', line)
            if not (m and key and re.fullmatch(r'[0-9a-fA-F]{8}', key)):
                continue
            if (int(key, 16) >> 24) & 0xF != 1:
                continue
            data = bytes(int(h, 16) for h in m.group(1).split(',') if h)
            name = 'dev-%s-%s' % (key.lower(), hashlib.sha1(data).hexdigest()[:12])
            with open(os.path.join(out, name), 'wb') as f:
                f.write(data)
            n += 1
print('seeds.sh: %d device elements extracted' % n, file=sys.stderr)
PY
for t in "${targets[@]}"; do
  echo "corpus/$t: $(find "$corpus/$t" -type f | wc -l) files"
done
