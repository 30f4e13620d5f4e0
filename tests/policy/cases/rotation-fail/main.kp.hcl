source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
key "never" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
key "slow" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  rotation {
    every = "400d"
  }
}
policy {
  builtin = "listed"
  rule "rotation" {
  }
}
