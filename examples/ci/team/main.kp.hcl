# The change-review pipeline with state shared in S3: the plan stage, the apply stage and the
# nightly drift job all read the same state object, and its lock keeps two runs from applying
# at once. run.sh points it at a local S3 (moto's server) through var.state_endpoint; in real
# use, drop `endpoint` and `credentials` and let the AWS SDK find the pipeline's credentials.

variable "state_endpoint" {
  type    = string
  default = "https://s3.eu-west-1.amazonaws.com"
}

keyplan {
  state "s3" {
    bucket      = "acme-keyplan-state"
    key         = "ci/keys.kpstate.json"
    region      = "eu-west-1"
    endpoint    = var.state_endpoint
    credentials = "local"
  }
}

source "software" "ci" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "service" {
  for_each  = toset(["orders", "billing"])
  algorithm = "AES_256"
  source    = source.software.ci
  targets   = [provider.aws.main]
  aliases   = ["alias/${keyplan.workspace}-${each.key}"]
  labels    = { service = each.key, workspace = keyplan.workspace }
}
