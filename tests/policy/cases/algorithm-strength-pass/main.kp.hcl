source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
key "signer" {
  algorithm = "RSA_3072"
  source    = source.software.main
  targets   = [provider.aws.main]
  usage = "sign"
}
key "old" {
  algorithm = "RSA_2048"
  source    = source.software.main
  targets   = [provider.aws.main]
  usage = "sign"
}
policy {
  builtin = "listed"
  rule "algorithm-strength" {
    min_rsa_bits = 2048
  }
}
