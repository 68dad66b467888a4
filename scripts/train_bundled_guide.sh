#!/usr/bin/env bash
# Reproduce the bundled GuidingPainter model from scratch with configs/bundled_guide.toml: data, training,
# held-out evaluation. Options and environment: scripts/train_bundled.sh.
exec bash "$(dirname "$0")/train_bundled.sh" guide "$@"
