-- The tables the policy corpus (statements.txt) runs against end to end,
-- in tests/policy.rs and tests/differential.rs.
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL, ssn text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers(id), amount numeric(10,2), created_at timestamptz DEFAULT now());
INSERT INTO customers (name, email, ssn) VALUES ('Ada', 'ada@example.com', '1'), ('Alan', 'alan@example.com', '2');
INSERT INTO orders (customer_id, amount) VALUES (1, 10), (2, 20);
CREATE TABLE scratch (a int);
CREATE MATERIALIZED VIEW order_totals AS SELECT customer_id, sum(amount) FROM orders GROUP BY 1;
CREATE TABLE api_keys (id int, secret text);
-- Writes that run more than the write: a foreign key action, a default and
-- a CHECK, a rule whose action writes another table.
CREATE TABLE order_notes (order_id int REFERENCES orders(id) ON DELETE CASCADE, note text DEFAULT 'none' CHECK (length(note) < 100));
CREATE TABLE audited (a int);
CREATE TABLE audit_trail (a int);
CREATE RULE audit AS ON INSERT TO audited DO ALSO INSERT INTO audit_trail VALUES (new.a);
