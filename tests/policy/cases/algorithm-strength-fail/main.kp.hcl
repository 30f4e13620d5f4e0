source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
key "signer" {
  algorithm = "RSA_2048"
  source    = source.software.main
  targets   = [provider.aws.main]
  usage = "sign"
}
key "mac" {
  algorithm = "HMAC_SHA224"
  source = source.software.main
  targets = [provider.aws.main]
}
policy {
  builtin = "listed"
  rule "algorithm-strength" {
  }
}
