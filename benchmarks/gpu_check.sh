#!/usr/bin/env bash
# The prepared GPU check (issue #35): at most 8 minutes on one H100 or H200.
#
#   benchmarks/gpu_check.sh            on a GPU machine: writes results/benchmarks/gpu-check-<UTC>.md
#   benchmarks/gpu_check.sh --dry      on CPU, tiny sizes, into a temporary folder (CI runs this
#                                      through tests/test_gpu_check.py so the script cannot rot)
#   benchmarks/gpu_check.sh --out DIR  write the result file into DIR instead
#   benchmarks/gpu_check.sh --suite F  the end-to-end step's suite (default suites/seed.toml)
#
# Steps: (1) the CUDA tests (they skip without CUDA); (2) a timm ResNet-18 student on synthetic
# 3x32x32 data, fp32 and bf16, with and without channels_last, model-bound and through the
# streaming path, as a fraction of the card's measured matmul peak (benchmarks/gpu_resnet.py);
# (3) the grouped small-MLP benchmark (benchmarks/test_bench_gpu.py); (4) a short end-to-end
# suite (the seed suite, 6 trials; its device auto = the GPU). Python: $KDBENCH_PYTHON, else
# .venv/bin/python, else python3 (the GPU machines' image has torch, timm and pytest; packages
# it lacks are listed in the result, and their steps are marked not run, never silently passed).
set -uo pipefail
cd "$(dirname "$0")/.."
dry=0
out=""
suite=suites/seed.toml
while [ $# -gt 0 ]; do
    case "$1" in
        --dry) dry=1 ;;
        --out) out="${2:?--out needs a folder}"; shift ;;
        --suite) suite="${2:?--suite needs a file}"; shift ;;
        *) echo "gpu_check.sh: unknown option '$1' (use --dry, --out DIR, --suite FILE)" >&2; exit 2 ;;
    esac
    shift
done
py="${KDBENCH_PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
work=$(mktemp -d)
if [ -z "$out" ]; then
    if [ "$dry" = 1 ]; then out="$work"; else out=results/benchmarks; fi
fi
mkdir -p "$out" "$work/steps"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
start=$(date +%s)

step() {  # step NAME COMMAND...: run it, keep its log, its exit code and its seconds
    local name=$1; shift
    local t0; t0=$(date +%s)
    echo "== $name: $*"
    "$@" >"$work/steps/$name.log" 2>&1
    local rc=$?
    echo "$rc $(( $(date +%s) - t0 ))" >"$work/steps/$name.rc"
    tail -n 3 "$work/steps/$name.log"
}

missing=$("$py" - <<'PY'
import importlib.util
need = ["torch", "timm", "pytest", "pytest_benchmark", "optuna", "pandas", "matplotlib"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PY
)
echo "$missing" >"$work/missing"
dryflag=()
[ "$dry" = 1 ] && dryflag=(--dry)

step cuda_tests "$py" -m pytest -q -p no:cacheprovider -rs \
    tests/kdcore_tests/test_cuda.py tests/bench_tests/test_cuda_run.py
step resnet "$py" benchmarks/gpu_resnet.py "${dryflag[@]}" --out "$work"
step grouped_mlp "$py" -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_gpu.py \
    --benchmark-only --benchmark-json="$work/mlp.json"
trials=6
[ "$dry" = 1 ] && trials=2
step end_to_end "$py" -m bench.cli run "$suite" --trials "$trials" \
    --out "$work/runs" --reports "$work/reports" -q
"$py" benchmarks/gpu_summary.py "$work" "$out/gpu-check-$stamp.md" \
    --dry "$dry" --seconds $(( $(date +%s) - start ))
rc=$?
echo "result: $out/gpu-check-$stamp.md"
exit $rc
