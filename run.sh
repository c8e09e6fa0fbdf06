#!/usr/bin/env bash
# Set up everything and run the main job: train a dVAE on Fashion-MNIST
# (a short run), evaluate it, write reconstructions and export a SavedModel;
# then generate images from class names with the pretrained generator.
#   ./run.sh                 # default short run
#   EPOCHS=5 STEPS=  ./run.sh  # longer: full epochs
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
PY=.venv/bin/python
RUN=${RUN:-runs/demo_dvae}
EPOCHS=${EPOCHS:-3}
STEPS=${STEPS-150}

steps_flag=()
[ -n "$STEPS" ] && steps_flag=(--steps_per_epoch="$STEPS")
start=$(date +%s)
# The zoo's dVAE recipe (configs/dvae_fashion_mnist.json), shortened.
$PY -m trainers.train --config=configs/dvae_fashion_mnist.json --dataset=fashion_mnist \
    --model_dir="$RUN" --epochs="$EPOCHS" "${steps_flag[@]}"
$PY -m trainers.evaluate --model="$RUN"
mkdir -p "$RUN/sample_inputs"
$PY - "$RUN/sample_inputs" <<'PYEOF'
import sys
from trainers import cli
cli.quiet_tensorflow_start()  # as the commands do: no TensorFlow start-up lines
from trainers import data, images
split = data.load_split("fashion_mnist", "test")
for i in range(8):
    images.save_png(split.images[i], f"{sys.argv[1]}/test_{i}.png")
PYEOF
$PY -m trainers.reconstruct --model="$RUN" --input_dir="$RUN/sample_inputs" \
    --output_dir="$RUN/reconstructions"
if [ -f trainers/export.py ]; then
  $PY -m trainers.export --model="$RUN" --export_base="exports/demo_dvae"
fi
# Stage two (DALL-E's Transformer prior), pretrained on the shipped dVAE's codes.
$PY -m trainers.generate --model=prior_dvae_fashion_mnist --prompt="ankle boot" --prompt=bag \
    --count=8 --output_dir="$RUN/generated"  # at the generator's own guidance scale (2)
echo
echo "Done in $(( $(date +%s) - start )) s. Outputs, under $PWD/:"
echo "  run (config, checkpoints, TensorBoard logs, history.csv, images/): $RUN/"
echo "  test metrics and pictures:  $RUN/eval/metrics.json, $RUN/eval/reconstructions.png, $RUN/eval/samples.png"
echo "  reconstructions of PNG files: $RUN/reconstructions/"
[ -d exports/demo_dvae ] && echo "  SavedModel for TF Serving: exports/demo_dvae/"
echo "  images generated from \"ankle boot\" and \"bag\": $RUN/generated/"
