package orders

// Caller is who asks: a customer, or an administrator, who sees every order.
type Caller struct {
	Customer string // the authenticated customer id (a token's sub)
	Admin    bool
}

// Sees reports whether c may see (read, cancel) o: its own orders, or every
// order for an administrator. A caller without a customer id sees no
// order of its own: no order has an empty customer id.
func (c Caller) Sees(o Order) bool {
	return c.Admin || (c.Customer != "" && c.Customer == o.CustomerID)
}
