source "software" "main" {}
provider "aws" "main" {}
key "k" {
  for_each  = toset(["x", "y"])
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  labels    = { ok = "fine", count = 3, flag = true, nested = { a = "b" } }
}
key "m" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  labels    = merge({ a = "b" }, { n = null })
}
