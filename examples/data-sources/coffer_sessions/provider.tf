terraform {
  required_providers {
    coffer = {
      source = "coffer/coffer"
    }
  }
}
