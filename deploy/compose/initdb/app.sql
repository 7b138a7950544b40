-- An application database for the compose stack to erase from (the `app-db` system of
-- deploy/erasure.toml). Run once by the postgres image when its volume is new.
CREATE DATABASE app OWNER erasure;
\connect app erasure
CREATE TABLE users (
    id    bigint PRIMARY KEY,
    email text NOT NULL UNIQUE
);
CREATE TABLE orders (
    id      bigint PRIMARY KEY,
    user_id bigint REFERENCES users (id),
    email   text,
    shipping_address text
);
INSERT INTO users VALUES (1, 'ada@example.org'), (2, 'alan@example.org');
INSERT INTO orders VALUES (10, 1, 'ada@example.org', '1 Analytical Row'), (11, 2, 'alan@example.org', '2 Bletchley Park');
