source "software" {}
provider "aws" "main" "extra" {}
key "has space" {}
key {}
variable "v" {
  typ = string
}
region = "x"
keyplan {
  state "local" { path = "x" }
  backend "s3" {}
}
