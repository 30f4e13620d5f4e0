source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
key "webhooks" {
  algorithm = "EC_P256"
  source = source.software.main
  targets = [provider.aws.main]
}
policy {
  builtin = "listed"
  rule "asymmetric-signing" {
  }
}
