keys "x" {}
locals {
  a = var.missing
}
