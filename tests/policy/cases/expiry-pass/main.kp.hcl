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
key "yearly" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  expiry {
    after = "180d"
  }
}
key "gcp_only" {
  algorithm = "AES_256"
  source = source.software.main
  targets = [provider.gcp.main]
}
policy {
  builtin = "listed"
  rule "expiry" {
    max_days = 180
  }
}
