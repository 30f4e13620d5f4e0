locals {
  a = "%{ if true }yes%{ endif }"
}
