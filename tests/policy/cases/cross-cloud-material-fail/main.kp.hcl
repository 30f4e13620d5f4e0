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
key "both" {
  algorithm = "AES_256"
  source = source.software.main
  targets = [provider.aws.main, provider.gcp.main]
}
policy {
  builtin = "listed"
  rule "cross-cloud-material" {
  }
}
