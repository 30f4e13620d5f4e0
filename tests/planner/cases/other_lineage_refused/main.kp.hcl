# A new state (no state file) meets a key of another lineage under the same address: the state
# was most likely lost, so the plan stops instead of creating a second key.
source "software" "local" {}
provider "aws" "main" {
  region = "eu-west-1"
}
key "app" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
  labels    = { team = "core" }
}
