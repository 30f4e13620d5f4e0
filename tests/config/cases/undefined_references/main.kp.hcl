variable "region" { default = "x" }
locals {
  name = "k"
}
source "software" "main" {}
provider "aws" "main" {}
key "k" {
  algorithm   = "AES_256"
  source      = source.softwre.main
  targets     = [provider.aws.main, provider.aws.mian]
  description = "${var.regin}-${local.nam}"
  aliases     = [each.key]
}
