source "software" "main" {}
provider "aws" "main" {}
key "list" {
  for_each  = ["a", "b"]
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
key "number" {
  for_each  = 3
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
key "numbers" {
  for_each  = toset([1, 2])
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
key "inside" {
  for_each  = { a = 1 }
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  description = each.value.name
}
