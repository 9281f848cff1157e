#!/usr/bin/env bash
# Test accuracy of the reference models, mean of three seeds, lunet and PyTorch:
#   bash bench/accuracy_seeds.sh            # mlp 10 epochs, cnn 3 epochs (torch_peer.py's models)
#   MODELS=cnn PEERS=torch bash bench/accuracy_seeds.sh    # one part of it
# Prints one line per run and the means.  Uses 2 threads for speed; accuracy does not depend
# on the thread count beyond rounding.
set -euo pipefail
cd "$(dirname "$0")/.."
for model in ${MODELS:-mlp cnn}; do
  epochs=10
  [ "$model" = cnn ] && epochs=3
  set -- "$model" "$epochs"
  for peer in ${PEERS:-lunet torch}; do
    sum=0
    for seed in 0 1 2; do
      if [ "$peer" = lunet ]; then
        line=$(lua5.4 bench/fashion.lua --model "$1" --epochs "$2" --threads 2 --seed "$seed" | tail -1)
      else
        # the fp32 line comes first; the whole output is read (head would cut the peer off
        # mid-write, and pipefail would end the script)
        out=$(/usr/bin/python3 ../shared/bench/torch_peer.py --model "$1" --epochs "$2" --threads 2 --seed "$seed" 2>/dev/null)
        line=${out%%$'\n'*}
      fi
      acc=$(printf '%s' "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["test_accuracy"])')
      echo "$peer $1 epochs=$2 seed=$seed test_accuracy=$acc"
      sum=$(python3 -c "print($sum + $acc)")
    done
    echo "$peer $1 mean test_accuracy $(python3 -c "print(round($sum / 3, 4))")"
  done
done
