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
