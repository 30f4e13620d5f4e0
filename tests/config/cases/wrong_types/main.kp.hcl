source "software" "main" {}
provider "aws" "main" {}
key "k" {
  algorithm   = 256
  source      = source.software.main
  targets     = provider.aws.main
  enabled     = "yes"
  aliases     = ["alias/a", 1]
  labels      = ["x"]
  description = { a = 1 }
}
