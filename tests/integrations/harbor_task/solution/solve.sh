#!/bin/bash
# The reference solution: Harbor's oracle agent runs it inside the environment.
set -euo pipefail
python3 -c 'print(sum(range(1, 101)))' > /app/answer.txt
echo "wrote $(cat /app/answer.txt) in $(pwd) as $(id -un)"
