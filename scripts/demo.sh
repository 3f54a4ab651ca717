#!/usr/bin/env bash
# `make demo`: start the local AWS emulator (moto) on 127.0.0.1, seed a small
# estate (EC2 instances, RDS instances, an Aurora cluster, in two regions),
# apply examples/quickstart against it with the provider just built, run each
# backup policy once with `coffer run`, and print the restore points, the
# replicas and the sessions; then (as root) fire one schedule by hand and boot its
# worker in a sandbox, printing the session it wrote. `scripts/demo.sh stop` stops
# the emulator.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO="$ROOT/.demo"
PORT="${COFFER_DEMO_PORT:-4566}"
ENDPOINT="http://127.0.0.1:$PORT"

stop_emulator() {
    if [ -f "$DEMO/moto.pid" ]; then
        kill "$(cat "$DEMO/moto.pid")" 2>/dev/null || true
        rm -f "$DEMO/moto.pid"
    fi
}

if [ "${1:-}" = "stop" ]; then
    stop_emulator
    echo "demo emulator stopped"
    exit 0
fi

# moto with the AWS behaviours it lacks patched back in (tests/support/moto_server.py),
# under the project venv, which holds the pinned moto (scripts/install-tools.sh).
moto_python() {
    echo "$ROOT/.venv/bin/python"
}

terraform_bin() {
    # The newest terraform on PATH when it is >= 1.0, else the 1.0.3 install.
    if command -v terraform >/dev/null 2>&1 \
        && terraform version -json 2>/dev/null | grep -q '"terraform_version": *"1\.'; then
        command -v terraform
    else
        echo "$ROOT/.tools/terraform-1.0.3/terraform"
    fi
}

mkdir -p "$DEMO"
stop_emulator
echo "==> starting the AWS emulator (moto) on $ENDPOINT"
MOTO_EC2_LOAD_DEFAULT_AMIS=false nohup "$(moto_python)" "$ROOT/tests/support/moto_server.py" \
    -H 127.0.0.1 -p "$PORT" >"$DEMO/moto.log" 2>&1 &
echo $! >"$DEMO/moto.pid"
for _ in $(seq 1 100); do
    if curl -fsS "$ENDPOINT/moto-api/" >/dev/null 2>&1; then break; fi
    sleep 0.2
done
curl -fsS "$ENDPOINT/moto-api/" >/dev/null || { echo "the emulator did not start; see $DEMO/moto.log" >&2; exit 1; }

export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
unset AWS_PROFILE
echo "==> seeding a small estate (scripts/seed_estate.py)"
"$(moto_python)" "$ROOT/scripts/seed_estate.py" --endpoint-url "$ENDPOINT"
# The KMS key the repository's workers' envelope is wrapped with: scheduled workers have no
# password, and a backup rule on a password repository without it is refused at apply.
WORKER_KEY="$("$(moto_python)" "$ROOT/scripts/demo_kms_key.py" --endpoint-url "$ENDPOINT")"

# A filesystem mirror holding the provider just built, so `terraform init`
# works offline.
VERSION=0.1.0
MIRROR="$DEMO/mirror/registry.terraform.io/coffer/coffer/$VERSION/linux_amd64"
mkdir -p "$MIRROR"
cp "$ROOT/target/debug/terraform-provider-coffer" "$MIRROR/terraform-provider-coffer_v$VERSION"
cat >"$DEMO/terraform.rc" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$DEMO/mirror"
    include = ["registry.terraform.io/coffer/coffer"]
  }
  direct {
    exclude = ["registry.terraform.io/coffer/coffer"]
  }
}
RC

WORK="$DEMO/quickstart"
rm -rf "$WORK"
mkdir -p "$WORK"
cp "$ROOT"/examples/quickstart/*.tf "$WORK/"
export TF_CLI_CONFIG_FILE="$DEMO/terraform.rc" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1
TF="$(terraform_bin)"
cd "$WORK"
echo "==> terraform init ($("$TF" version | head -n1))"
"$TF" init -input=false -no-color >/dev/null
echo "==> terraform apply examples/quickstart"
"$TF" apply -input=false -auto-approve -no-color -var "endpoint_url=$ENDPOINT" -var "worker_kms_key_arn=$WORKER_KEY" | grep -E '^(coffer_|Apply complete)'

echo
echo "==> what Coffer manages now"
"$TF" output -json >"$DEMO/outputs.json"
python3 - "$DEMO/outputs.json" "$WORK" <<'PY'
import json, sys
outputs = {name: o["value"] for name, o in json.load(open(sys.argv[1])).items()}

print("worker configurations")
line = "  {:<8}{:<12}{:<24}{:<5}{:<12}{:<24}{}"
print(line.format("name", "region", "launch template", "ver", "instance", "AMI", "subnet"))
for name, w in sorted(outputs["worker_configurations"].items()):
    print(line.format(name, w["region"], w["id"], w["launch_template_version"],
                      w["instance_type"], w["ami_id"], w["subnet_id"]))

repo = outputs.get("repository")
if repo:
    print()
    print("repository")
    print("  {} {} ({}, {}, format {}), id {}".format(
        repo["name"], repo["location"], repo["region"], repo["storage_class"],
        repo["format_version"], repo["id"]))

mappings = outputs.get("region_mappings") or {}
if mappings:
    print()
    print("region mappings")
    for name, m in sorted(mappings.items()):
        print("  {:<16}{} -> {}".format(name, m["source_region"], m["target_region"]))

policies = outputs.get("backup_policies") or {}
if policies:
    print()
    print("backup policies")
    line = "  {:<16}{:<9}{:<16}{:<16}{}"
    print(line.format("policy", "rule", "cron", "timezone", "schedule"))
    for name, p in sorted(policies.items()):
        state = "" if p["enabled"] else " (disabled)"
        for rule, r in sorted(p["rules"].items()):
            print(line.format(name + state, rule, r["cron"], r["timezone"], r["schedule_arn"]))

if "iam_policies" in outputs:
    print()
    print("IAM policies for the provider, scheduler, worker and backup roles:")
    print("  cd {} && terraform output -json iam_policies".format(sys.argv[2]))
PY
echo
echo "==> drift check: terraform plan -detailed-exitcode"
set +e
"$TF" plan -input=false -no-color -detailed-exitcode -var "endpoint_url=$ENDPOINT" -var "worker_kms_key_arn=$WORKER_KEY" >/dev/null
code=$?
set -e
case $code in
    0) echo "no drift: AWS matches the configuration";;
    2) echo "drift: terraform plan found changes";;
    *) echo "terraform plan failed"; exit 1;;
esac

# The executor: the same catalog and emulator, settings from the environment.
COFFER="$ROOT/target/debug/coffer"
export AWS_ENDPOINT_URL="$ENDPOINT" AWS_REGION=us-east-1 COFFER_S3_USE_PATH_STYLE=true
for policy in quickstart quickstart-rds; do
    echo
    echo "==> coffer run --policy $policy"
    set +e
    "$COFFER" run --policy "$policy"
    code=$?
    set -e
    case $code in
        0) ;;
        3) echo "(the session ended with warnings; see above)";;
        *) echo "coffer run failed" >&2; exit 1;;
    esac
done
for policy in quickstart quickstart-rds; do
    echo
    echo "==> restore points of $policy (coffer points --policy $policy)"
    "$COFFER" points --policy "$policy"
done
echo
echo "==> replicas per region"
for policy in quickstart quickstart-rds; do
    "$COFFER" points --policy "$policy" --kind replica --json
done | python3 -c '
import json, sys, collections
text = sys.stdin.read()
decoder, rows, at = json.JSONDecoder(), [], 0
while at < len(text):
    while at < len(text) and text[at].isspace():
        at += 1
    if at >= len(text):
        break
    chunk, at = decoder.raw_decode(text, at)
    rows.extend(chunk)
by_region = collections.Counter((r["region"], r["policy"]) for r in rows)
for (region, policy), n in sorted(by_region.items()):
    print("  {:<11} {:<16} {} replicas".format(region, policy, n))
'
for policy in quickstart quickstart-rds; do
    echo
    echo "==> sessions of $policy (coffer sessions --policy $policy)"
    "$COFFER" sessions --policy "$policy"
done

# A worker's life: a rule's schedule fired by hand, as EventBridge Scheduler would, and its
# worker booted in a sandbox that looks like an EC2 instance (its own network namespace with
# IMDSv2, an emulator inside, the AWS CLI) — tests/executor/worker_boot.rs, printing what it saw.
echo
if [ "$(id -u)" = 0 ]; then
    echo "==> a schedule fired by hand; its worker boots in a sandbox (tests/executor/worker_boot.rs)"
    echo "    building the worker binary it fetches (scripts/build-worker.sh, glibc 2.26; the first build takes ~15 min)"
    (cd "$ROOT" && bash scripts/build-worker.sh >/dev/null)
    (cd "$ROOT" && COFFER_DEMO_SHOW=1 "${CARGO:-cargo}" test --locked --test coffer-tests \
        executor::worker_boot::a_fired_schedule_boots_a_worker_that_runs_its_rule_reports_and_shuts_down \
        -- --exact --nocapture 2>/dev/null) >"$DEMO/worker.out" || {
        echo "the sandboxed worker failed; run the test above to see why" >&2
        exit 1
    }
    sed -n '/^--- coffer demo ---$/,/^--- end ---$/p' "$DEMO/worker.out" | sed '1d;$d'
else
    echo "==> skipped: booting a worker in a sandbox needs root (network and mount namespaces)"
fi

echo
echo "The emulator keeps running at $ENDPOINT (state in $WORK)."
echo "Try: cd $WORK && TF_CLI_CONFIG_FILE=$DEMO/terraform.rc $TF plan -var endpoint_url=$ENDPOINT -var worker_kms_key_arn=$WORKER_KEY"
echo "Run the scheduler on this machine (fires due rules; Ctrl-C stops it cleanly):"
echo "  AWS_ENDPOINT_URL=$ENDPOINT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo \\"
echo "  COFFER_S3_USE_PATH_STYLE=true $COFFER agent"
echo "Stop the emulator with: make demo-stop"
