source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
provider "gcp" "main" {
  project  = "demo"
  key_ring = "keyplan"
  endpoint = "embedded"
}
key "aws_key" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
key "gcp_key" {
  algorithm = "AES_256"
  source = source.software.main
  targets = [provider.gcp.main]
}
policy {
  builtin = "listed"
  custom "gcp-hsm-only" {
    condition = key.bits >= 512
    message   = "Keys at the second cloud are 512 bits."
    scope {
      target_kinds = ["gcp"]
    }
  }
}
