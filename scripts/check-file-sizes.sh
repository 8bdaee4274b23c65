#!/usr/bin/env bash
# Prints every file that has grown past one idea's worth of lines, and fails if it printed any.
#
# A Rust source file may have 600 lines, not counting a trailing `#[cfg(test)]` module (inline
# unit tests sit with the code they test and are not part of its idea). A test file (under a
# `tests/` folder, or anywhere in `integration-tests/`) may have 800. A file past its limit holds
# more than one idea; `make test` runs this first so the split happens when the file grows, not
# in a clean-up much later.
#
# Usage: scripts/check-file-sizes.sh [root]   (default: the repository this script is in)
set -euo pipefail

SOURCE_LIMIT="${SOURCE_LIMIT:-600}"
TEST_LIMIT="${TEST_LIMIT:-800}"
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$root"

# Lines that count: everything before a trailing `#[cfg(test)] mod … { … }` that runs to the end
# of the file. rustfmt puts the module's closing brace in column 0, and nothing inside it there,
# so the first column-0 `}` after the opening line closes it; the module is trailing when no code
# follows that brace. An out-of-line `mod tests;` is one line and is simply counted.
counted_lines() {
    awk '
        { line[NR] = $0 }
        END {
            n = NR
            for (i = 1; i <= n; i++) {
                if (line[i] !~ /^#\[cfg\(test\)\][ \t]*$/) continue
                j = i + 1
                while (j <= n && (line[j] ~ /^[ \t]*$/ || line[j] ~ /^#\[/ || line[j] ~ /^\/\//)) j++
                if (j > n || line[j] !~ /^(pub(\([a-z]+\))? )?mod [A-Za-z0-9_]+ \{[ \t]*$/) continue
                k = j + 1
                while (k <= n && line[k] !~ /^\}/) k++
                if (k > n) continue
                rest = k + 1
                while (rest <= n && line[rest] ~ /^[ \t]*$/) rest++
                if (rest > n) { print i - 1; exit }
            }
            print n
        }' "$1"
}

found=0
while IFS= read -r -d '' file; do
    path="${file#./}"
    case "/$path" in
        */tests/* | /integration-tests/*) limit="$TEST_LIMIT"; what="test file" ;;
        *) limit="$SOURCE_LIMIT"; what="source file" ;;
    esac
    lines=$(counted_lines "$file")
    if [ "$lines" -gt "$limit" ]; then
        echo "$path: $lines lines (a $what may have $limit)"
        found=1
    fi
done < <(find . \
    \( -name target -o -name node_modules -o -name .git \
       -o -path ./fuzz/corpus -o -path ./fuzz/artifacts -o -path ./fuzz/coverage \) -prune \
    -o -type f -name '*.rs' -print0 | sort -z)

if [ "$found" -ne 0 ]; then
    echo "check-file-sizes: split the files above (one idea each, named by the first //! comment)" >&2
    exit 1
fi
