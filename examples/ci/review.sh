#!/usr/bin/env bash
# Change review for keyplan: plan on a proposed change, post the plan for review, and apply
# exactly the reviewed plan once the change is approved. Works in any CI system: it needs only
# bash, keyplan, the configuration directory and a place to keep one file between the stages.
#
#   review.sh check   runs the policy rules and writes $SARIF_FILE (SARIF 2.1.0) for code-review annotations;
#                     exit 0 when no finding reaches $POLICY_FAIL_ON, 2 when one does, 1 on errors
#   review.sh plan    saves the plan to $PLAN_FILE and writes $COMMENT_FILE (Markdown) for reviewers;
#                     exit 0 with no changes, 2 with changes (so a pipeline can skip the apply stage), 1 on errors
#   review.sh approve signs $PLAN_FILE as one reviewer ($SIGNER, key $SIGNING_KEY, passphrase in
#                     $KEYPLAN_SIGNING_PASSPHRASE); run once per reviewer; the signatures are kept in
#                     $PLAN_FILE.approvals.json, which travels with the plan file
#   review.sh apply   applies $PLAN_FILE as saved; keyplan refuses it if it was altered, if the state or
#                     the configuration moved since, if it is older than $MAX_PLAN_AGE, or (with an
#                     approvals block) if it lacks the signatures the configuration requires
#
# Settings (environment):
#   KEYPLAN       the keyplan command                      (default: keyplan)
#   KEYPLAN_DIR   the configuration directory              (default: .)
#   PLAN_FILE     where the plan is kept between stages     (default: keyplan.kpplan)
#   COMMENT_FILE  the Markdown for the review comment       (default: keyplan-plan.md)
#   MAX_PLAN_AGE  the oldest plan apply accepts            (default: 24h)
#   LOCK_TIMEOUT  how long to wait for another run's lock  (default: 5m)
#   SARIF_FILE    the policy findings for code review       (default: keyplan.sarif)
#   POLICY_FAIL_ON  the least severe finding that fails the check stage: error, warning or info (default: error)
#   SIGNER        the approving reviewer's name in the approvals block (approve stage)
#   SIGNING_KEY   that reviewer's Ed25519 signing key file (approve stage; make one with keyplan approve -new-key)
set -uo pipefail

KEYPLAN=${KEYPLAN:-keyplan}
KEYPLAN_DIR=${KEYPLAN_DIR:-.}
PLAN_FILE=${PLAN_FILE:-keyplan.kpplan}
COMMENT_FILE=${COMMENT_FILE:-keyplan-plan.md}
MAX_PLAN_AGE=${MAX_PLAN_AGE:-24h}
LOCK_TIMEOUT=${LOCK_TIMEOUT:-5m}
SARIF_FILE=${SARIF_FILE:-keyplan.sarif}
POLICY_FAIL_ON=${POLICY_FAIL_ON:-error}

kp() { "$KEYPLAN" -chdir "$KEYPLAN_DIR" "$@"; }

stage_check() {
  kp check -no-color -format=sarif -fail-on="$POLICY_FAIL_ON" >"$SARIF_FILE"
  local code=$?
  case "$code" in
    0) echo "Policy: no finding at or above $POLICY_FAIL_ON. Upload $SARIF_FILE to annotate the change." ;;
    2) echo "Policy: findings at or above $POLICY_FAIL_ON. Upload $SARIF_FILE: the review shows each one on its line." >&2 ;;
    *) echo "keyplan check failed; see the diagnostics above." >&2 ;;
  esac
  return "$code"
}

stage_plan() {
  kp plan -no-color -detailed-exitcode -lock-timeout="$LOCK_TIMEOUT" -out="$PLAN_FILE"
  local code=$?
  if [ "$code" -eq 1 ]; then
    echo "keyplan plan failed; see the diagnostics above." >&2
    return 1
  fi
  kp show -markdown "$PLAN_FILE" >"$COMMENT_FILE" || return 1
  if [ "$code" -eq 2 ]; then
    echo "The plan has changes: post $COMMENT_FILE for review and keep $PLAN_FILE for the apply stage."
  else
    echo "No changes. $COMMENT_FILE says so."
  fi
  return "$code"
}

stage_approve() {
  if [ ! -f "$PLAN_FILE" ]; then
    echo "No saved plan at $PLAN_FILE: run '$0 plan' first and keep its file for this stage." >&2
    return 1
  fi
  if [ -z "${SIGNER:-}" ] || [ -z "${SIGNING_KEY:-}" ]; then
    echo "Set SIGNER and SIGNING_KEY (and KEYPLAN_SIGNING_PASSPHRASE) to approve as a reviewer." >&2
    return 1
  fi
  kp approve "$PLAN_FILE" -key "$SIGNING_KEY" -name "$SIGNER"
}

stage_apply() {
  if [ ! -f "$PLAN_FILE" ]; then
    echo "No saved plan at $PLAN_FILE: run '$0 plan' first and keep its file for this stage." >&2
    return 1
  fi
  kp apply -no-color -lock-timeout="$LOCK_TIMEOUT" -max-plan-age="$MAX_PLAN_AGE" "$PLAN_FILE"
}

case "${1:-}" in
  check) stage_check ;;
  plan) stage_plan ;;
  approve) stage_approve ;;
  apply) stage_apply ;;
  *)
    echo "usage: $0 check|plan|approve|apply" >&2
    exit 64
    ;;
esac
