source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
key "quarterly" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  rotation {
    every = "90d"
  }
}
key "signer" {
  algorithm = "EC_P256"
  source = source.software.main
  targets = [provider.aws.main]
}
policy {
  builtin = "listed"
  rule "rotation" {
    max_days = 90
  }
}
