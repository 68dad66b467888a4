#!/usr/bin/env bash
# Reproduce an exemplar model from scratch with configs/bundled_exemplar.toml: data, training,
# held-out evaluation. Options and environment: scripts/train_bundled.sh.
exec bash "$(dirname "$0")/train_bundled.sh" exemplar "$@"
