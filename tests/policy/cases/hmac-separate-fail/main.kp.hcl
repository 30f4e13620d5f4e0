source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
key "mac" {
  algorithm = "HMAC_SHA256"
  source = source.software.main
  targets = [provider.aws.main]
}
key "data" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
policy {
  builtin = "listed"
  rule "hmac-separate" {
  }
}
