// jenkins-ha: start this Jenkins in quiet-down.
//
// Copy into $JENKINS_HOME/init.groovy.d/ (the shared home: both controllers run it). Jenkins
// core has no "start quiet" switch, and a Jenkins that starts out of quiet-down may start builds
// before its jenkins-ha sidecar has decided whether this node is the active one: with two
// controllers on one home, that is two controllers building. This script puts Jenkins into
// quiet-down while it starts, before executors take work; the sidecar of the active node takes
// it out of quiet-down once that node holds the lease and its Jenkins has caught up with the
// disk. A standby stays quiet.
import jenkins.model.Jenkins

Jenkins.get().doQuietDown()
