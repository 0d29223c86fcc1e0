# The Python tools AWS mode's checks use, in a virtual environment of their own (so a newer
# cfn-lint elsewhere on the machine changes nothing), installed only when missing:
# - cfn-lint 1.53.3, pinned: later versions stopped applying the SAM transform and miss errors in
#   SAM event sources;
# - cargo-lambda (its PyPI package ships the binary), for `cargo lambda watch` / `invoke`.
# Sets AWS_TOOLS_BIN to the environment's bin folder.

AWS_TOOLS_DIR="${TRIBUTARY_TOOLS_DIR:-$HOME/.cache/tributary-tools}"
AWS_TOOLS_BIN="$AWS_TOOLS_DIR/venv/bin"
CFN_LINT_VERSION=1.53.3

ensure_aws_tools() {
    local python="${PYTHON:-python3}"
    if ! command -v "$python" >/dev/null 2>&1; then
        echo "aws-tools: $python is missing (cfn-lint and cargo-lambda need Python 3)" >&2
        return 1
    fi
    if [[ ! -x "$AWS_TOOLS_BIN/python" ]]; then
        mkdir -p "$AWS_TOOLS_DIR"
        "$python" -m venv "$AWS_TOOLS_DIR/venv"
    fi
    local wanted=()
    if [[ "$("$AWS_TOOLS_BIN/cfn-lint" --version 2>/dev/null)" != "cfn-lint $CFN_LINT_VERSION" ]]; then
        wanted+=("cfn-lint==$CFN_LINT_VERSION")
    fi
    if ! "$AWS_TOOLS_BIN/cargo-lambda" lambda --version >/dev/null 2>&1; then
        wanted+=("cargo-lambda")
    fi
    if ((${#wanted[@]})); then
        echo "aws-tools: installing ${wanted[*]}" >&2
        "$AWS_TOOLS_BIN/python" -m pip install --quiet --disable-pip-version-check "${wanted[@]}" >&2
    fi
    "$AWS_TOOLS_BIN/cfn-lint" --version
    "$AWS_TOOLS_BIN/cargo-lambda" lambda --version
}
