#!/bin/sh
# The README's C example must be exactly docs/examples/readme_example.c.
set -eu
readme=$1 example=$2
awk '/^```c$/{on=1;next} /^```$/{if(on){exit}} on' "$readme" | diff -u "$example" - \
  && echo "README example matches $example"
