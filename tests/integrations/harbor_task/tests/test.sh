#!/bin/bash
# The verifier: reward 1 when /app/answer.txt holds 5050, else 0 (installs nothing).
mkdir -p /logs/verifier
if [ "$(tr -d '[:space:]' < /app/answer.txt 2>/dev/null)" = "5050" ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
