source "software" "main" {}
provider "aws" "main" {}
key "k" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
locals {
  x = 1
}
