provider "aws" "main" {}
key "k" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
locals {
  x = 2
}
keyplan {}
keyplan {}
