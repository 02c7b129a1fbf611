#!/bin/sh
# The demo's output reads right (issue: listings taken after healing were
# printed under "before healing", and "1 reactions"): the replicas differ
# before healing and five listings follow that line, before the "after
# healing" line, which reports five byte-identical replicas, then the
# healed thread; counts agree with their nouns.
set -eu
out=$("$1")
echo "$out" | awk '
	/^before healing: replicas differ$/ { before = NR }
	/^  [a-z]+'"'"'s replica: [0-9]+ messages, newest 3:$/ {
		if (!before || after) { print "listing outside before-healing: " $0; bad = 1 }
		listings++
	}
	/^after healing: all 5 replicas byte-identical/ { after = NR }
	/^    #/ { rows++ }
	/ 1 reactions$/ || / [02-9] reaction$/ || / [0-9][0-9]+ reaction$/ {
		print "wrong plural: " $0; bad = 1
	}
	END {
		if (!before) { print "no \"before healing: replicas differ\" line"; bad = 1 }
		if (!after) { print "no \"after healing: all 5 replicas byte-identical\" line"; bad = 1 }
		if (listings != 5) { print listings " listings before healing, want 5"; bad = 1 }
		if (rows < 6) { print "only " rows " message rows"; bad = 1 }
		exit bad
	}' >&2 || { echo "$out" >&2; exit 1; }
echo "demo output reads right"
